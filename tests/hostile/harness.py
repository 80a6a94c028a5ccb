"""How a hostile case is run and judged (issue 34).

A case is a ``forgetless`` command line that a user could type against their own folder, with the class of
failure it once fell into and the part of the one error line that says what was wrong. Running it checks,
in-process through ``forgetless.cli.main``:

- the exit code (2 for bad input; 130 for Ctrl-C);
- exactly one error line on stderr (``forgetless: error: ...`` or argparse's ``forgetless CMD: error: ...``),
  holding the expected text (the file, line, field, tensor or flag, and what was expected), and no traceback;
- the user's folder afterwards is byte for byte what it was: nothing lost, nothing modified, nothing added
  (no half-written output, no temporary directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from forgetless.cli import main

# The five classes of issue 34, and the refusals users also try that fall in none of them.
CLASSES = {
    "files-lost": "1. a user's file lost or replaced",
    "broken-model": "2. a broken model reported as a success",
    "measure-nothing": "3. a measurement of nothing",
    "endless": "4. an input that never ends",
    "traceback": "5. a traceback instead of one line",
    "other": "other refusals users try",
}
# Longer than any case should take; a hang (the class-4 bug) fails the case instead of the whole run.
CASE_SECONDS = 120

ROWS = [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}", "answer": str(a + b)}
        for a in range(3) for b in range(3)]


@dataclass(frozen=True)
class Case:
    """One hostile command line and what must happen.

    ``argv`` entries are formatted with the ``World``'s paths (``{model}``, ``{data}``, ``{root}``, ...); ``setup``
    makes the hostile files first (they belong to the user, so they are in the snapshot too); ``slow`` cases load a
    model or run a command to its end and carry the ``hostile`` marker.
    """

    id: str
    klass: str
    argv: tuple[str, ...]
    expect: str
    setup: Callable[[World], None] | None = None
    slow: bool = False
    code: int = 2

    def __post_init__(self) -> None:
        assert self.klass in CLASSES, self.klass
        assert self.expect, f"{self.id}: a case must say what the error line names"


def case(id: str, klass: str, argv: str | list[str], expect: str, setup: Callable[[World], None] | None = None,
         slow: bool = False, code: int = 2) -> Case:
    """A ``Case``; ``argv`` may be one string split on spaces (no argument of those holds a space)."""
    return Case(id, klass, tuple(argv.split() if isinstance(argv, str) else argv), expect, setup, slow, code)


def params(cases: list[Case]) -> list[Any]:
    """``pytest.param`` per case, id'd by its name, the slow ones marked ``hostile``."""
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return [pytest.param(c, id=c.id, marks=[pytest.mark.hostile] if c.slow else []) for c in cases]


@dataclass
class World:
    """A user's folder: data, a corpus, notes, two copies of a tiny model, a study config, generated samples."""

    root: Path
    paths: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Path:
        return Path(self.paths[key])

    def format(self, argv: tuple[str, ...]) -> list[str]:
        """``argv`` with ``{name}`` placeholders replaced by this world's paths."""
        return [a.format(**self.paths) for a in argv]


Setup = Callable[[World], None]  # makes a case's hostile files in the user's folder, before the snapshot


def write(name: str, text: str | bytes) -> Setup:
    """A setup writing the world's file ``name`` (a path under the user's folder) with ``text``."""
    def setup(world: World) -> None:
        path = world.root / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return setup


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write ``rows`` as JSON lines and return the path."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_world(root: Path, model: Path) -> World:
    """Lay out the user's folder under ``root`` (which must not exist), with copies of the tiny ``model``."""
    root.mkdir()
    write_jsonl(root / "data.jsonl", ROWS)
    write_jsonl(root / "corpus.jsonl", [{"text": f"Some general text number {i}, and more of it."} for i in range(12)])
    (root / "notes.txt").write_text("my notes")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("keep me")
    shutil.copytree(model, root / "model")
    shutil.copytree(model, root / "model2")
    # Context-free samples as `forgetless generate` writes them (token ids under the tiny vocabulary, the BOS prompt).
    write_jsonl(root / "samples.jsonl", [{"token_ids": [5 + i, 40 + i, 77, 2], "finished": True} for i in range(4)])
    (root / "samples.meta.json").write_text(json.dumps({"prompt_ids": [1], "settings": {"temperature": 1.0,
                                                                                         "top_p": 1.0}}))
    (root / "study.yaml").write_text(yaml.safe_dump({
        "output": str(root / "study-out"), "base_model": str(root / "model"),
        "data": {"train": str(root / "data.jsonl"), "test": str(root / "data.jsonl"),
                 "general": str(root / "corpus.jsonl")},
        "methods": [{"name": "sft", "learning_rates": [1e-3]}]}))
    (root / "train.yaml").write_text(yaml.safe_dump({"model": str(root / "model"), "data": str(root / "data.jsonl"),
                                                     "output": str(root / "out")}))
    names = {"data": "data.jsonl", "corpus": "corpus.jsonl", "notes": "notes.txt", "mine": "mine", "model": "model",
             "model2": "model2", "samples": "samples.jsonl", "study": "study.yaml", "train_yaml": "train.yaml",
             "out": "out", "outfile": "out.jsonl"}
    return World(root, {"root": str(root), **{k: str(root / v) for k, v in names.items()}})


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: digest}`` of everything under ``root``, never opening what is not a regular file (a FIFO
    would block, a link to ``/dev/zero`` never end): links are recorded by target, other special files by type."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            key = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                seen[key] = "link -> " + os.readlink(path)
            elif stat.S_ISREG(mode):
                seen[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[key] = "dir" if stat.S_ISDIR(mode) else f"special {stat.S_IFMT(mode):o}"
    return seen


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail (rather than hang the run) when the body takes longer than ``seconds``."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the command ran past {seconds} s: an input that never ends?")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def error_lines(err: str) -> list[str]:
    """The error lines of stderr: ours (``forgetless: error:``) and argparse's (``forgetless CMD: error:``)."""
    return [line for line in err.splitlines() if line.startswith("forgetless") and ": error: " in line]


def run_case(c: Case, world: World, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``c`` in ``world`` and check the exit code, the one error line and the untouched folder.

    Returns:
        The error line (or, for Ctrl-C, the interruption line).
    """
    if c.setup is not None:
        c.setup(world)
    before = snapshot(world.root)
    capsys.readouterr()
    try:
        with deadline(CASE_SECONDS):
            code = main(world.format(c.argv))
    except SystemExit as exit_info:  # argparse
        code = exit_info.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == c.code, f"exit {code}, expected {c.code}; stderr: {err[-2000:]}"
    if c.code == 130:
        lines = [line for line in err.splitlines() if line.startswith("forgetless: interrupted")]
    else:
        lines = error_lines(err)
    assert len(lines) == 1, f"expected one error line, got {len(lines)}: {err[-2000:]}"
    assert c.expect.format(**world.paths) in lines[0], lines[0]
    assert snapshot(world.root) == before, "the user's folder changed"
    return lines[0]
