"""Streaming safetensors output: shards planned from tensor metadata, written one tensor
at a time, plus the ``model.safetensors.index.json`` that transformers reads.

A safetensors file starts with a header holding every tensor's dtype, shape and byte
range, so the whole shard is normally assembled in memory before it is saved
(``safetensors.torch.save_file``). The merge output's names, dtypes and shapes are known
before any data is computed, so here the header is written first and each tensor's bytes
are appended as soon as it is computed: memory holds one output tensor, not one shard.

The bytes are written by a second thread while the next slice is computed: the write to
the page cache (and, once dirty pages pile up, the kernel's throttling of it) took half of
a merge's time when done in turn with the arithmetic (``bench/merge_bench.py``). At most
``WRITE_DEPTH`` slices wait for the writer, each copied out of the engine's buffer (which the
engine reuses) into one of ``WRITE_DEPTH`` byte buffers the writer reuses in turn, so the memory
bound stays a few slices and no slice pays for fresh pages. A slice handed over as ``Lent`` (the
engine rounds each merged slice into one of ``LENT_BUFFERS`` buffers in turn) is written from
where it lies, without that copy.
"""

from __future__ import annotations

import json
import struct
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch

from forgetless.atomic import write_json
from forgetless.merging.checkpoint import DTYPE_NAMES, INDEX_FILE, SINGLE_FILE, TensorInfo

DEFAULT_SHARD_BYTES = 5 * 1024**3
WRITE_DEPTH = 4  # slices computed ahead of the writer thread at most
# A producer that lends its buffers rotates over this many: a block handed over WRITE_DEPTH blocks ago is
# written by the time the next one is handed over (``_Writer._room``), so the buffer after it is free again.
LENT_BUFFERS = WRITE_DEPTH + 1


class Lent(NamedTuple):
    """A slice the producer leaves untouched until ``LENT_BUFFERS - 1`` more slices have been handed over (it
    rotates over ``LENT_BUFFERS`` buffers): written from its own memory, without a copy."""

    tensor: torch.Tensor


def parse_size(value: int | str) -> int:
    """Bytes from ``123``, ``"500MB"``, ``"2GB"`` or ``"1.5GiB"`` (decimal and binary units)."""
    if isinstance(value, int):
        size = value
    else:
        text = value.strip().upper().replace(" ", "")
        units = {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "B": 1}
        unit = next((u for u in units if text.endswith(u)), "")
        try:
            size = int(float(text[: len(text) - len(unit)]) * units.get(unit, 1))
        except ValueError:
            raise ValueError(f"shard size {value!r}: expected bytes or a size like 500MB or 2GB") from None
    if size <= 0:
        raise ValueError(f"shard size {value!r}: must be positive")
    return size


@dataclass(frozen=True)
class Shard:
    """One output file and the tensors it holds, in write order."""

    file: str
    names: list[str]


def plan_shards(tensors: dict[str, TensorInfo], max_bytes: int) -> list[Shard]:
    """Split tensors (in the given order) into shards of at most ``max_bytes`` (a larger
    tensor gets a shard of its own). One shard is named ``model.safetensors``, as
    ``save_pretrained`` names it; several are ``model-0000i-of-0000n.safetensors``."""
    groups: list[list[str]] = [[]]
    size = 0
    for name, info in tensors.items():
        if groups[-1] and size + info.nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += info.nbytes
    if len(groups) == 1:
        return [Shard(SINGLE_FILE, groups[0])]
    n = len(groups)
    return [Shard(f"model-{i + 1:05d}-of-{n:05d}.safetensors", g) for i, g in enumerate(groups)]


def _header(names: list[str], tensors: dict[str, TensorInfo]) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        info = tensors[name]
        header[name] = {"dtype": info.dtype, "shape": list(info.shape), "data_offsets": [offset, offset + info.nbytes]}
        offset += info.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors itself writes it
    return struct.pack("<Q", len(raw)) + raw


class _Writer:
    """Appends byte blocks to a file in order on one background thread, ``WRITE_DEPTH`` blocks ahead at most.

    ``ring``: ``WRITE_DEPTH`` byte buffers shared by every file of a merge. A tensor's bytes are copied into
    the next one in turn; it was last used ``WRITE_DEPTH`` tensor blocks ago, and with at most
    ``WRITE_DEPTH - 1`` blocks pending once ``_room`` returns, that write has finished.
    """

    def __init__(self, handle: BinaryIO, pool: ThreadPoolExecutor, ring: list[torch.Tensor]) -> None:
        self.handle, self.pool, self.ring = handle, pool, ring
        self.pending: deque[Future[int | None]] = deque()

    def _room(self) -> None:
        while len(self.pending) >= WRITE_DEPTH:
            self.pending.popleft().result()  # an error of the writer's is raised here

    def write(self, data: bytes) -> None:
        """Queue ``data`` (an immutable block: the header)."""
        self._room()
        self.pending.append(self.pool.submit(self.handle.write, data))

    def write_tensor(self, piece: torch.Tensor, lent: bool = False) -> int:
        """Queue ``piece``'s bytes: a copy (the caller may change ``piece`` as soon as this returns), or, ``lent``,
        ``piece`` itself (see ``Lent``); returns how many bytes."""
        self._room()
        raw = piece.detach().cpu().reshape(-1).view(torch.uint8)
        if lent and piece.is_contiguous():
            self.pending.append(self.pool.submit(self.handle.write, memoryview(raw.numpy())))
            return raw.numel()
        slot = self.ring.pop(0)
        if slot.numel() < raw.numel():
            slot = torch.empty(raw.numel(), dtype=torch.uint8)
        self.ring.append(slot)
        block = slot[:raw.numel()]
        block.copy_(raw)
        self.pending.append(self.pool.submit(self.handle.write, memoryview(block.numpy())))
        return raw.numel()

    def finish(self) -> None:
        """Wait for every queued block (raising the writer's error, if any)."""
        while self.pending:
            self.pending.popleft().result()

    def abandon(self) -> None:
        """Wait for every queued block, ignoring their errors (the caller's own error is the one to raise)."""
        while self.pending:
            self.pending.popleft().exception()


def _write_tensor(handle: _Writer, pieces: torch.Tensor | Iterable[torch.Tensor | Lent], name: str,
                  info: TensorInfo) -> None:
    """Append one tensor's bytes: the tensor itself, or consecutive slices of its rows in order."""
    written, whole = 0, isinstance(pieces, torch.Tensor)
    for item in [pieces] if whole else pieces:
        lent = isinstance(item, Lent)
        piece = item.tensor if lent else item
        shape = tuple(piece.shape)
        fits = shape == info.shape if whole else (len(shape) == len(info.shape) and shape[1:] == info.shape[1:])
        if DTYPE_NAMES[piece.dtype] != info.dtype or not fits:
            raise RuntimeError(f"{name}: computed {piece.dtype} {list(piece.shape)}, planned {info.dtype} "
                               f"{list(info.shape)}")
        written += handle.write_tensor(piece, lent)  # else a copy: the engine computes the next slice in the same buffer
    if written != info.nbytes:
        raise RuntimeError(f"{name}: computed {written} bytes, planned {info.dtype} {list(info.shape)} "
                           f"({info.nbytes} bytes)")


def write_shards(directory: Path, tensors: dict[str, TensorInfo], max_bytes: int,
                 produce: Callable[[str], torch.Tensor | Iterable[torch.Tensor | Lent]]) -> list[Shard]:
    """Write every tensor of ``tensors`` (planned names/dtypes/shapes) into ``directory``.

    Args:
        directory: where the shards and the index go.
        tensors: the output's tensors, in write order; ``file`` of each is ignored.
        max_bytes: shard size limit.
        produce: called with a tensor name, returns that output tensor, or an iterable of
            consecutive slices of its rows (computed on demand, so only one exists at a time), each a
            tensor (copied before it is written) or a ``Lent`` one (written from where it lies).

    Returns:
        The shards written.
    """
    shards = plan_shards(tensors, max_bytes)
    ring = [torch.empty(0, dtype=torch.uint8) for _ in range(WRITE_DEPTH)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="forgetless-write") as pool:
        for shard in shards:
            with open(directory / shard.file, "wb") as handle:
                writer = _Writer(handle, pool, ring)
                try:  # the file is closed only once the writer is done with it
                    writer.write(_header(shard.names, tensors))
                    for name in shard.names:
                        _write_tensor(writer, produce(name), name, tensors[name])
                    writer.finish()
                except BaseException:
                    writer.abandon()
                    raise
    if len(shards) > 1:
        write_json(directory / INDEX_FILE, {
            "metadata": {"total_size": sum(info.nbytes for info in tensors.values())},
            "weight_map": {name: shard.file for shard in shards for name in shard.names},
        })
    return shards
