"""Which float dtype a checkpoint is stored in, and which one an output is written in.

Nearly every model on the hub ships bf16 weights (Qwen2.5, Llama 3, Gemma, Mistral).
Training keeps fp32 master weights and merging combines in fp32, but what is written
should default to the base's own dtype: a 7B bf16 base is 14 GB on disk, 28 GB in fp32.
The stored dtype is read from metadata only (safetensors headers, config.json), never
by loading the weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Literal

import torch

SaveDtype = Literal["auto", "fp32", "bf16", "fp16"]

# Short names used in configs and flags <-> torch dtypes.
SHORT_NAMES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Names config.json uses (``dtype`` in transformers >= 4.56, ``torch_dtype`` before).
CONFIG_NAMES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                        "float16": torch.float16, "float64": torch.float64}
# Float dtype names in safetensors headers.
HEADER_NAMES: dict[str, torch.dtype] = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                                        "F64": torch.float64}


def short_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (``"fp64"`` for float64), for records and messages."""
    names = {v: k for k, v in SHORT_NAMES.items()}
    return names.get(dtype, "fp64" if dtype == torch.float64 else str(dtype).removeprefix("torch."))


def parse_dtype(name: str) -> torch.dtype:
    """``"fp32"``/``"bf16"``/``"fp16"`` (or ``float32``/``bfloat16``/``float16``) -> torch dtype."""
    dtype = SHORT_NAMES.get(name) or CONFIG_NAMES.get(name)
    if dtype is None or dtype == torch.float64:
        raise ValueError(f"dtype {name!r}: expected one of {', '.join(SHORT_NAMES)}")
    return dtype


def _header(file: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: 8 bytes of little-endian length, then the JSON."""
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))


def _weight_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return [directory / f for f in sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))]
    single = directory / "model.safetensors"
    return [single] if single.is_file() else []


def float_tensors(directory: str | Path) -> dict[str, tuple[torch.dtype, int]]:
    """Float tensor name -> (dtype, number of elements), from the safetensors headers of ``directory``."""
    tensors: dict[str, tuple[torch.dtype, int]] = {}
    for file in _weight_files(Path(directory)):
        for key, info in _header(file).items():
            if key != "__metadata__" and info["dtype"] in HEADER_NAMES:
                numel = 1
                for size in info["shape"]:
                    numel *= size
                tensors[key] = (HEADER_NAMES[info["dtype"]], numel)
    return tensors


def stored_dtype(path: str | Path) -> torch.dtype | None:
    """The float dtype most of a checkpoint directory's parameters are stored in.

    Read from the safetensors headers (what is on disk), else from config.json's
    ``dtype`` / ``torch_dtype``; None for a path that is not a directory (a hub id)
    or one that says neither.
    """
    directory = Path(path)
    if not directory.is_dir():
        return None
    counts: dict[torch.dtype, int] = {}
    for dtype, numel in float_tensors(directory).values():
        counts[dtype] = counts.get(dtype, 0) + numel
    if counts:
        # A bf16 checkpoint may keep a few small tensors (norms, routers) in fp32: the
        # dtype of most parameters is the one the checkpoint is "in".
        return max(counts, key=lambda d: counts[d])
    config = directory / "config.json"
    if config.is_file():
        return config_dtype(json.loads(config.read_text()))
    return None


def config_dtype(config: dict[str, Any] | Any) -> torch.dtype | None:
    """``dtype`` (or the older ``torch_dtype``) of a config dict or ``PretrainedConfig``; None if unset."""
    for key in ("dtype", "torch_dtype"):
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(value, torch.dtype):
            return value
        if isinstance(value, str) and value in CONFIG_NAMES:
            return CONFIG_NAMES[value]
    return None


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The float dtype most of an in-memory model's parameters are in (fp32 if it has none)."""
    counts: dict[torch.dtype, int] = {}
    for param in model.parameters():
        if param.is_floating_point():
            counts[param.dtype] = counts.get(param.dtype, 0) + param.numel()
    return max(counts, key=lambda d: counts[d]) if counts else torch.float32


def resolve_save_dtype(choice: str, source: str | Path | torch.nn.Module, config: Any = None) -> torch.dtype:
    """The dtype an output is written in.

    Args:
        choice: ``auto`` (the base's stored dtype), ``fp32``, ``bf16`` or ``fp16``.
        source: the base checkpoint directory (or hub id), or a model built in memory.
        config: the base's loaded config, consulted when ``source`` is a hub id.

    Returns:
        ``choice`` as a torch dtype; for ``auto`` the base's dtype, float32 when it
        cannot be told (the dtype of the master weights, which loses nothing).
    """
    if choice != "auto":
        return parse_dtype(choice)
    if isinstance(source, torch.nn.Module):
        found: torch.dtype | None = model_dtype(source)
    else:
        found = stored_dtype(source) or (config_dtype(config) if config is not None else None)
    return found or torch.float32
