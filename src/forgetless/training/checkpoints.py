"""Which Trainer checkpoints are complete enough to resume from.

``transformers.Trainer`` writes a checkpoint in place, file by file: the weights,
then ``optimizer.pt``, ``scheduler.pt`` and ``rng_state.pth``, and last
``trainer_state.json``. A kill in the middle leaves a directory that looks like the
newest checkpoint but cannot be resumed (``Can't find a valid checkpoint``). Each
candidate is therefore checked before use: ``trainer_state.json`` parses and names
the directory's step, the weights' safetensors headers read, and every torch file is
a complete zip archive (its central directory sits at the end, so a truncated file
fails). Nothing is unpickled here.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from safetensors import safe_open

_STEP = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
# Written by every full (not weights-only) save; resuming reads each of them.
_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")


def incomplete_reason(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None when it is complete."""
    state_file = checkpoint / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError):
        return "trainer_state.json is truncated or unreadable"
    match = _STEP.match(checkpoint.name)
    if not isinstance(state, dict) or match is None or state.get("global_step") != int(match.group(1)):
        return "trainer_state.json does not match the directory's step"
    weights = [checkpoint / name for name in _WEIGHTS if (checkpoint / name).is_file()]
    if not weights:
        return "no safetensors weights"
    for file in weights:
        shards = [file]
        if file.name.endswith(".index.json"):
            try:
                shards = [checkpoint / s for s in sorted(set(json.loads(file.read_text())["weight_map"].values()))]
            except (OSError, ValueError, KeyError, AttributeError):
                return f"{file.name} is truncated or unreadable"
        for shard in shards:
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    handle.keys()
            except Exception:  # safetensors raises its own error type, or OSError for a missing shard
                return f"{shard.name} is missing or truncated"
    for name in _TORCH_FILES:
        file = checkpoint / name
        if not file.is_file():
            return f"no {name}"
        try:
            with zipfile.ZipFile(file) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return f"{name} is truncated"
    return None


def sorted_checkpoints(directory: Path) -> list[Path]:
    """``checkpoint-N`` subdirectories of ``directory``, oldest step first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def split_checkpoints(directory: Path) -> tuple[list[Path], dict[Path, str]]:
    """The complete checkpoints (oldest first) and the incomplete ones with the reason."""
    complete: list[Path] = []
    incomplete: dict[Path, str] = {}
    for checkpoint in sorted_checkpoints(directory):
        reason = incomplete_reason(checkpoint)
        if reason is None:
            complete.append(checkpoint)
        else:
            incomplete[checkpoint] = reason
    return complete, incomplete
