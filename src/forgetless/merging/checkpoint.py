"""A model directory seen as tensors on disk: single-file or sharded safetensors.

Only tensor *metadata* (names, dtypes, shapes, which file) is read up front; a tensor's
data is read when asked for, one at a time, through ``safe_open``. Each read opens and
closes its file, so the memory map is released at once and the resident set of a merge
stays a few tensors, however large the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from forgetless.merging.errors import MergeError
from forgetless.models import ModelLoadError, check_safetensors

# MergeError is defined in errors.py (torch-free, for --help) and kept importable from here, where it was.
__all__ = ["DTYPES", "DTYPE_NAMES", "FLOAT_DTYPES", "Checkpoint", "MergeError", "TensorInfo"]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# safetensors dtype names <-> torch dtypes, for headers written by the streaming writer.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it looks like, without its data."""

    file: Path
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        numel = 1
        for size in self.shape:
            numel *= size
        return numel * torch.empty((), dtype=DTYPES[self.dtype]).element_size()


class Checkpoint:
    """The safetensors weights and config of one model directory.

    Args:
        path: a directory holding ``model.safetensors`` or ``model.safetensors.index.json``
            plus its shards.

    Raises:
        MergeError: no safetensors weights (``.bin`` files are refused: unpickling
            untrusted files runs code), an index that names a missing shard, or a tensor
            the index places in a shard that does not hold it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise MergeError(f"{self.path}: not a model directory")
        self.config: dict[str, Any] = self._read_config()
        self.tensors: dict[str, TensorInfo] = self._read_tensors()

    def _read_config(self) -> dict[str, Any]:
        config = self.path / "config.json"
        if not config.is_file():
            return {}
        try:
            value = json.loads(config.read_bytes().decode("utf-8-sig"))
        except RecursionError:
            raise MergeError(f"{config}: not valid JSON (nested too deeply to read)") from None
        except (ValueError, UnicodeDecodeError) as err:
            raise MergeError(f"{config}: not valid JSON ({err})") from None
        if not isinstance(value, dict):
            raise MergeError(f"{config}: expected a JSON object, got {type(value).__name__}")
        return value

    def _read_tensors(self) -> dict[str, TensorInfo]:
        index = self.path / INDEX_FILE
        if index.is_file():
            try:
                weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            except (ValueError, AttributeError, RecursionError) as err:
                raise MergeError(f"{index}: not a JSON object with a weight_map ({type(err).__name__})") from None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise MergeError(f"{index}: weight_map must map tensor names to shard file names")
            if not weight_map:
                raise MergeError(f"{index}: has no weight_map")
            files = sorted(set(weight_map.values()))
            outside = [f for f in files if Path(f).is_absolute() or ".." in Path(f).parts]
            if outside:
                raise MergeError(f"{index}: shard {outside[0]} lies outside {self.path}; expected shard files beside "
                                 "the index")
            missing = [f for f in files if not (self.path / f).is_file()]
            if missing:
                raise MergeError(f"{self.path}: shard {missing[0]} named in {INDEX_FILE} is missing"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        elif (self.path / SINGLE_FILE).is_file():
            weight_map, files = {}, [SINGLE_FILE]
        else:
            try:
                check_safetensors(self.path)  # the one load policy's message, with the conversion
            except ModelLoadError as err:
                raise MergeError(str(err)) from None
            raise MergeError(f"{self.path}: no {SINGLE_FILE} or {INDEX_FILE}")
        tensors: dict[str, TensorInfo] = {}
        for name in files:
            file = self.path / name
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():
                        view = handle.get_slice(key)
                        tensors[key] = TensorInfo(file, view.get_dtype(), tuple(view.get_shape()))
            except SafetensorError as err:  # e.g. a shard cut short by an interrupted copy
                raise MergeError(f"{file}: not a complete safetensors file ({err})") from None
        for key, name in weight_map.items():
            if key not in tensors or tensors[key].file.name != name:
                raise MergeError(f"{self.path}: {INDEX_FILE} places tensor {key} in {name}, which does not hold it")
        return tensors

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Load one tensor, or rows ``[start, stop)`` of its first dimension (opening and closing its
        file, so no mapping outlives the call and only the rows read were ever resident).

        Args:
            name: the tensor's name.
            rows: None for the whole tensor (any shape ``S``); else ``(start, stop)``, giving shape
                ``(stop - start, *S[1:])`` of a tensor of at least one dimension.
        """
        info = self.tensors[name]
        with safe_open(str(info.file), framework="pt") as handle:
            if rows is None:
                return handle.get_tensor(name)
            return handle.get_slice(name)[rows[0]:rows[1]]

    @property
    def architecture(self) -> str:
        """``model_type`` and ``architectures`` from config.json, as one string for messages."""
        arch = self.config.get("architectures") or []
        return f"{self.config.get('model_type', '?')} ({', '.join(arch) or '?'})"

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {len(self.tensors)} tensors)"
