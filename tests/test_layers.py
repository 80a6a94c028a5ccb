"""The package's layers: every import of a forgetless module points down (or sideways within a layer),
and no packages import each other in a loop.

The layers, bottom to top (``docs/architecture.md`` explains them; ``../shared/STYLE.md`` is their origin):

0. the ground floor: ``models`` (loading), ``losses`` (``token_nll``) and small helpers
   that import nothing of forgetless above them;
1. ``data``, ``gguf`` (GGUF import), ``theory``, ``config`` (reading a YAML config: it decodes with ``data``'s
   reader) and ``schema_flags`` (every subcommand's flags and its ``--config`` file, merged);
2. ``objectives`` and ``replay`` (what a training step mixes in; ``ReplayConfig``);
3. ``regularizers``;
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
    {"__init__", "atomic", "bootstrap", "cache_dir", "dtypes", "extras", "lazy", "losses", "machine", "models",
     "outputs", "params", "positions", "registry", "special_tokens", "prompting"},
    {"data", "gguf", "theory", "config", "schema_flags"},
    {"objectives", "replay"},
    {"regularizers"},
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


def _unexplained_function_imports(path: Path) -> list[int]:
    """Lines of imports of forgetless inside functions with no ``# imported here: WHY`` above them.

    The comment may stand on the import's line or above the run of imports (blank lines and other
    imports between) it starts. Subcommand modules (``cli.py``) are exempt: they import the library
    only when their command runs, so ``forgetless --help`` starts without torch (docs/architecture.md).
    """
    if path.name == "cli.py":
        return []
    lines = path.read_text().split("\n")
    unexplained = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            module = inner.module if isinstance(inner, ast.ImportFrom) else (
                inner.names[0].name if isinstance(inner, ast.Import) else None)
            if not module or not module.startswith("forgetless"):
                continue
            row = inner.lineno - 1
            while row >= 0 and "imported here" not in lines[row]:
                above = lines[row - 1].strip() if row > 0 else ""
                if not (above == "" or above.startswith(("from ", "import ", "# imported here"))):
                    row = -1
                    break
                row -= 1
            if row < 0:
                unexplained.append(inner.lineno)
    return unexplained


def test_imports_inside_functions_say_why() -> None:
    """A function-level import is kept only where it keeps start-up light or an extra optional, and says so:
    a loop between packages is never the reason (the tests above forbid loops)."""
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted(ROOT.rglob("*.py"))
             for line in _unexplained_function_imports(p)]
    assert found == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The walk is not vacuous: a ground-floor file importing the study would be found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from forgetless.study.running.runner import run_study\n")
    assert _imports(probe) == [("study", 2)]
    assert _unexplained_function_imports(probe) == [2]
    probe.write_text("def f():\n    # imported here: start-up\n    import torch\n\n"
                     "    from forgetless.study.running import runner\n")
    assert _unexplained_function_imports(probe) == []


def test_reporting_reads_rows_not_the_running_study() -> None:
    """``study.reporting`` makes the report from result rows alone: it imports nothing of ``study.running``
    (a report can be rebuilt from ``results.jsonl`` on a machine without the study's cells)."""
    reporting = ROOT / "study" / "reporting"
    assert sorted(reporting.glob("*.py")), "the reporting package moved"
    found = []
    for path in sorted(reporting.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("forgetless.study.running"):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []
