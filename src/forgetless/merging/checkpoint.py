"""A model directory seen as tensors on disk: single-file or sharded safetensors.

Only tensor *metadata* (names, dtypes, shapes, which file, where in it) is read up front; a
tensor's data is read when asked for, one at a time. No memory map outlives a read, so the resident
set of a merge stays a few tensors, however large the models. A read into a buffer the caller reuses
(``out``) is one unbuffered read of the tensor's bytes, with no mapping and no fresh pages: through
``safe_open`` (a mapping, a copy into a new tensor, the header parsed again) reads took a third of a
merge's time (``bench/merge_bench.py``). Such a read opens and closes its file, unless the reader
keeps the files open (``files_open``: a merge reads thousands of slices, and an open and close cost
as much as reading 256 KiB).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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
    offset: int = -1  # where the tensor's bytes start in ``file``; -1: not known (planned outputs)

    @property
    def nbytes(self) -> int:
        numel = 1
        for size in self.shape:
            numel *= size
        return numel * torch.empty((), dtype=DTYPES[self.dtype]).element_size()


def _header_tensors(file: Path) -> dict[str, TensorInfo]:
    """Every tensor of safetensors ``file`` (already validated by ``safe_open``) from its header: the 8-byte header
    length, the JSON header (each tensor's dtype, shape and ``data_offsets``), then the data. One parse gives what
    ``safe_open``'s views would, plus where each tensor's bytes start."""
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    # By name, as safe_open's keys() lists them: the order a merge writes its output in.
    return {key: TensorInfo(file, entry["dtype"], tuple(entry["shape"]), 8 + length + int(entry["data_offsets"][0]))
            for key, entry in sorted(header.items()) if key != "__metadata__"}


def _read_exactly(handle: BinaryIO, file: Path, offset: int, out: torch.Tensor) -> None:
    """Fill contiguous ``out`` with the bytes of ``file`` (open as ``handle``, unbuffered) from ``offset`` on
    (``readinto``: the bytes go from the page cache straight into ``out``; in a loop, as a read may return fewer
    than asked)."""
    view = memoryview(out.reshape(-1).view(torch.uint8).numpy())
    done = 0
    handle.seek(offset)
    while done < len(view):
        count = handle.readinto(view[done:])
        if not count:
            raise MergeError(f"{file}: ended at byte {offset + done}, inside a tensor; the file was cut short "
                             "after it was opened")
        done += count


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
        self._handles: dict[Path, BinaryIO] | None = None  # files kept open by ``files_open``

    @contextmanager
    def files_open(self) -> Iterator[None]:
        """Within the block, reads into a buffer (``read(..., out=)``) keep each file they open open, and the
        block's end closes them: a merge's slice reads then pay one open per shard, not one per slice. Nested in
        another such block, it leaves the closing to that one."""
        if self._handles is not None:
            yield
            return
        self._handles = {}
        try:
            yield
        finally:
            handles, self._handles = self._handles, None
            for handle in handles.values():
                handle.close()

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
                with safe_open(str(file), framework="pt"):  # validates the header and the file's length
                    pass
            except SafetensorError as err:  # e.g. a shard cut short by an interrupted copy
                raise MergeError(f"{file}: not a complete safetensors file ({err})") from None
            tensors.update(_header_tensors(file))
        for key, name in weight_map.items():
            if key not in tensors or tensors[key].file.name != name:
                raise MergeError(f"{self.path}: {INDEX_FILE} places tensor {key} in {name}, which does not hold it")
        return tensors

    def shape_of(self, name: str, rows: tuple[int, int] | None = None) -> tuple[int, ...]:
        """The shape ``read(name, rows)`` returns."""
        shape = self.tensors[name].shape
        return shape if rows is None else (rows[1] - rows[0], *shape[1:])

    def read(self, name: str, rows: tuple[int, int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Load one tensor, or rows ``[start, stop)`` of its first dimension (no mapping outlives the call, and
        only the rows read were ever resident; its file is opened and closed, unless ``files_open`` keeps it).

        Args:
            name: the tensor's name.
            rows: None for the whole tensor (any shape ``S``); else ``(start, stop)``, giving shape
                ``(stop - start, *S[1:])`` of a tensor of at least one dimension.
            out: a contiguous tensor of that shape and the stored dtype to read into (a buffer the caller
                reuses); None: a new tensor.

        Returns:
            The rows read: ``out`` itself when given.
        """
        info = self.tensors[name]
        if out is not None and info.offset >= 0 and sys.byteorder == "little":  # safetensors is little-endian
            if out.dtype != DTYPES[info.dtype] or tuple(out.shape) != self.shape_of(name, rows) \
                    or not out.is_contiguous():
                raise ValueError(f"read({name!r}): out is {out.dtype} {tuple(out.shape)}, expected a contiguous "
                                 f"{info.dtype} {self.shape_of(name, rows)}")
            row_bytes = out.element_size() * math.prod(info.shape[1:])
            offset = info.offset + (rows[0] * row_bytes if rows is not None else 0)
            if self._handles is None:
                with open(info.file, "rb", buffering=0) as handle:
                    _read_exactly(handle, info.file, offset, out)
            else:
                if info.file not in self._handles:
                    self._handles[info.file] = open(info.file, "rb", buffering=0)  # closed by files_open
                _read_exactly(self._handles[info.file], info.file, offset, out)
            return out
        with safe_open(str(info.file), framework="pt") as handle:
            tensor = handle.get_tensor(name) if rows is None else handle.get_slice(name)[rows[0]:rows[1]]
        return tensor if out is None else out.copy_(tensor)

    @property
    def architecture(self) -> str:
        """``model_type`` and ``architectures`` from config.json, as one string for messages."""
        arch = self.config.get("architectures") or []
        return f"{self.config.get('model_type', '?')} ({', '.join(arch) or '?'})"

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, {len(self.tensors)} tensors)"
