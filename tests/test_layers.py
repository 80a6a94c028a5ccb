"""The package's layers: every import of a forgetless module points down (or sideways within a layer),
and no packages import each other in a loop.

The layers, bottom to top (``docs/architecture.md`` explains them; ``../shared/STYLE.md`` is their origin):

0. the ground floor: ``models`` (loading), ``losses`` (``token_nll``) and small helpers
   that import nothing of forgetless above them;
1. ``data`` and ``theory``;
2. ``objectives`` and ``replay`` (what a training step mixes in);
3. ``config`` and ``regularizers``;
4. ``training``;
5. ``evaluation``;
6. ``testbed`` (built with training and measured with evaluation; resolves ``testbed:`` specs);
7. ``merging``;
8. ``study``;
9. ``cli`` (the one command).

Imports inside functions count too: a loop hidden in a function is still a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import forgetless

ROOT = Path(forgetless.__file__).parent
LAYERS: list[set[str]] = [
    {"__init__", "atomic", "bootstrap", "dtypes", "lazy", "losses", "machine", "models", "params", "positions",
     "registry", "schema_flags"},
    {"data", "theory"},
    {"objectives", "replay"},
    {"config", "regularizers"},
    {"training"},
    {"evaluation"},
    {"testbed"},
    {"merging"},
    {"study"},
    {"cli"},
]
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _unit(path: Path) -> str:
    """The top-level package or module of ``forgetless`` that ``path`` belongs to."""
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported forgetless unit, line)`` for every absolute import of forgetless in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "forgetless" and len(parts) > 1:
                found.append((parts[1], node.lineno))
    return found


def _edges() -> dict[tuple[str, str], str]:
    """Package-level import edges, each with the first place it is made."""
    edges: dict[tuple[str, str], str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _unit(path)
        for target, line in _imports(path):
            if target != source:
                edges.setdefault((source, target), f"{path.relative_to(ROOT)}:{line}")
    return edges


def test_every_module_is_in_a_layer() -> None:
    units = {_unit(p) for p in ROOT.rglob("*.py")}
    assert units - set(LEVEL) == set(), "declare the new module's layer in LAYERS"


def test_no_import_points_up() -> None:
    upward = [f"{where}: {source} (layer {LEVEL[source]}) imports {target} (layer {LEVEL[target]})"
              for (source, target), where in _edges().items() if LEVEL[target] > LEVEL[source]]
    assert upward == []


def test_no_package_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a, b in _edges() if reaches(b, a, set()))
    assert cycles == []


def test_the_ground_floor_imports_nothing_above_it() -> None:
    ground = [p for p in ROOT.rglob("*.py") if LEVEL[_unit(p)] == 0]
    assert {p.name for p in ground} >= {"models.py", "losses.py"}
    above = [f"{p.name}:{line} imports {target}" for p in ground for target, line in _imports(p) if LEVEL[target] > 0]
    assert above == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The walk is not vacuous: a ground-floor file importing the study would be found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from forgetless.study.runner import run_study\n")
    assert _imports(probe) == [("study", 2)]
