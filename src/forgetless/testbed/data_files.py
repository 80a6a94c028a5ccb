"""The testbed's data without its model: what a study of a real model needs from the testbed.

``testbed:PRESET/tasks/FAMILY/SPLIT.jsonl`` and ``testbed:PRESET/general/heldout.jsonl`` name
data, not the tiny model; building the whole testbed (training its tokenizer and pretraining
its base, minutes on a laptop) just to read them would tax every study of a real model. The
files come from the same corpus split, generator, sizes and seed as the built testbed's
(``build.build_testbed``), so they are identical, byte for byte, wherever they are written: the
built testbed's own when it exists, else a data-only copy in the cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from forgetless.atomic import atomic_dir, write_jsonl
from forgetless.cache_dir import cache_root
from forgetless.testbed.corpus import corpus_fingerprint, load_documents, split_documents
from forgetless.testbed.presets import Preset, get_preset
from forgetless.testbed.tasks import FAMILIES, generate_family

# The folders of a testbed that hold data only.
DATA_FOLDERS = ("tasks/", "general/")


def testbed_dir(preset: Preset) -> Path:
    """Where the testbed of ``preset`` is cached (whether or not it is built)."""
    key = json.dumps({"recipe": preset.recipe(), "corpus": corpus_fingerprint()}, sort_keys=True)
    return cache_root() / "testbed" / f"{preset.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def write_general(root: Path) -> None:
    """``general/pretrain.jsonl`` and ``general/heldout.jsonl``: the embedded corpus split by document."""
    train_docs, heldout_docs = split_documents(load_documents())
    write_jsonl(root / "general" / "pretrain.jsonl", [{"text": p} for d in train_docs for p in d.paragraphs])
    write_jsonl(root / "general" / "heldout.jsonl",
                [{"text": p, "document": d.name} for d in heldout_docs for p in d.paragraphs])


def write_tasks(root: Path, preset_name: str) -> dict[str, dict[str, list[dict[str, str]]]]:
    """Every family's splits under ``root/tasks/FAMILY/SPLIT.jsonl``; returns the rows by family and split."""
    preset = get_preset(preset_name)
    written = {}
    for family in FAMILIES.values():
        written[family.name] = generate_family(family, preset.task_sizes, preset.seed)
        for split, rows in written[family.name].items():
            write_jsonl(root / "tasks" / family.name / f"{split}.jsonl", rows)
    return written


def data_files(preset_name: str) -> Path:
    """A directory holding the ``tasks/`` and ``general/`` data of a preset: the built testbed when there is
    one, else a data-only copy (written once, atomically)."""
    built = testbed_dir(get_preset(preset_name))
    if (built / "manifest.json").is_file():
        return built
    root = cache_root() / "testbed-data" / built.name
    if not (root / "tasks").is_dir():
        with atomic_dir(root, overwrite=True) as tmp:
            write_general(tmp)
            write_tasks(tmp, preset_name)
    return root


__all__ = ["DATA_FOLDERS", "data_files", "testbed_dir", "write_general", "write_tasks"]
