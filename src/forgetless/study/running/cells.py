"""Cells: the cached units of a study (a trained model, an evaluation), keyed by what determines them.

A cell's key is a hash of everything that determines its result: its kind, its
parameters, and the content hashes of its inputs. A finished cell is a directory
``cells/<kind>-<key>/`` holding ``result.json`` (written atomically, last), so a
study killed at any point leaves finished cells intact and unfinished ones
recognisable; rerunning skips the finished ones, and changing one method's
parameters changes only that method's keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.atomic import write_json
from forgetless.machine import machine_stamp


def content_key(value: Any) -> str:
    """A short, stable hash of a JSON-serialisable value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def model_fingerprint(path: str | Path) -> str:
    """Identify a model directory by its config and the size and name of its weight files.

    Hashing gigabytes of weights on every run would cost minutes; a directory written
    atomically by forgetless or by ``save_pretrained`` changes its files when it changes.
    """
    path = Path(path)
    if not path.is_dir():
        return str(path)  # a hub id: its name is its identity
    parts: dict[str, Any] = {}
    for file in sorted(path.iterdir()):
        if file.suffix in {".json", ".safetensors", ".bin"} and file.is_file():
            parts[file.name] = file.read_text() if file.suffix == ".json" else file.stat().st_size
    return content_key(parts)


@dataclass(frozen=True)
class Cell:
    """One cached unit of work: ``root/<kind>-<key>``."""

    root: Path
    kind: str
    key: str

    @property
    def dir(self) -> Path:
        return self.root / f"{self.kind}-{self.key}"

    @property
    def result_path(self) -> Path:
        return self.dir / "result.json"

    def done(self) -> bool:
        """Whether the cell finished (its result file is written last)."""
        return self.result_path.is_file()

    def load(self) -> dict[str, Any]:
        """The finished cell's result."""
        return json.loads(self.result_path.read_text())

    def save(self, result: dict[str, Any]) -> dict[str, Any]:
        """Record the result atomically, marking the cell finished, with the machine that computed it.

        A cached cell keeps the stamp of the machine it ran on, so a study resumed or
        rerun elsewhere still says where each figure was measured.
        """
        result = {**result, "machine": machine_stamp()["summary"]}
        write_json(self.result_path, result)
        return result


STUDY = "<study>"


def study_relative(value: Any, study: Path) -> Any:
    """``value`` with every path inside the study directory written relative to it (``<study>/cells/...``).

    A cell's key must not change when the study is copied to another disk or its folder
    renamed: what lies inside the study is named by its place there, what lies outside
    by its content (the base's fingerprint, the data's hash, which every spec carries).
    """
    if isinstance(value, dict):
        return {k: study_relative(v, study) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [study_relative(v, study) for v in value]
    if isinstance(value, str) and value.startswith(str(study)):
        rest = value[len(str(study)):]
        if not rest or rest.startswith(("/", "\\")):
            return STUDY + rest.replace("\\", "/")
    return value


def cell(root: Path, kind: str, spec: dict[str, Any], record: bool = True) -> Cell:
    """The cell of ``kind`` determined by ``spec``; its spec is stored beside it for inspection
    (unless ``record`` is off: a lookup that must write nothing, such as a dry run's).

    ``root`` is the study's ``cells`` folder; paths inside the study enter the key relative to it
    (``study_relative``), so a moved study finishes from its cache.
    """
    spec = study_relative(spec, root.resolve().parent)
    made = Cell(root, kind, content_key({"kind": kind, **spec}))
    if record and not (made.dir / "spec.json").is_file():
        write_json(made.dir / "spec.json", spec)
    return made
