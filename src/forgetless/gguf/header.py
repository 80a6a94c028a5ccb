"""What a GGUF file holds, checked before anything is dequantized.

GGUF (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) is
one file: the magic bytes ``GGUF``, a version, typed key-value metadata
(``general.architecture``, ``<arch>.block_count``, ``tokenizer.ggml.*``,
``tokenizer.chat_template``) and a table of tensors, each stored as a ggml type
(``F32``, ``F16``, ``BF16`` or a block quantization such as ``Q4_1``, ``Q8_0``,
``Q4_K``). Only the header is read (transformers' GGUF header reader, which
memory-maps the file), so checking a multi-gigabyte file costs milliseconds.

What is supported is asked of the libraries that do the work, not listed here:
architectures from transformers' GGUF loader, tensor types from what ``gguf.dequantize``
(the loader's dequantizer) accepts.
"""

from __future__ import annotations

import functools
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"GGUF"

# transformers' GGUF tables list these as sections, not architectures.
_NOT_ARCHITECTURES = {"general", "tokenizer"}
# Encoder-decoders transformers reads from GGUF, but as T5 models: AutoModelForCausalLM has no class for them.
_NOT_CAUSAL = {"t5", "umt5", "t5encoder"}


class GgufError(ValueError):
    """A GGUF file that cannot be converted; the message names the file, what is wrong and what was expected."""


@dataclass(frozen=True)
class GgufSummary:
    """The facts of a GGUF file that decide whether and how it converts.

    Attributes:
        path: the file.
        architecture: ``general.architecture`` (llama.cpp's name: ``llama`` for Llama, Mistral and SmolLM).
        name: ``general.name``, or the file's stem.
        tensor_types: ggml type name -> number of tensors stored in it (``{"Q4_1": 210, "F32": 61}``).
        chat_template: whether ``tokenizer.chat_template`` is present.
    """

    path: Path
    architecture: str
    name: str
    tensor_types: dict[str, int]
    chat_template: bool


@functools.cache
def supported_architectures() -> tuple[str, ...]:
    """The architectures transformers' GGUF loader reads into a causal LM."""
    from transformers.integrations.gguf import GGUF_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS)
    return tuple(sorted(names - _NOT_ARCHITECTURES - _NOT_CAUSAL))


@functools.cache
def supported_tensor_types() -> tuple[str, ...]:
    """The ggml types ``gguf.dequantize`` turns into floats, found by dequantizing one zero block of each."""
    import gguf
    import numpy as np

    found = []
    for qtype in gguf.GGMLQuantizationType:
        _, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        try:
            gguf.dequantize(np.zeros(block_bytes, dtype=np.uint8), qtype)
        except (NotImplementedError, ValueError):  # "Dequantization for Q8_1 is not yet implemented"
            continue
        found.append(qtype.name)
    return tuple(found)


def _tensor_types(path: Path) -> Counter[str]:
    """ggml type name -> number of tensors, from the tensor table.

    transformers' header reader takes 0.06 s on SmolLM2's file where ``gguf.GGUFReader`` takes 5 s
    (it parses the 49,152-token vocabulary into arrays); it knows only the types transformers packs,
    so a file holding another type is read again with ``GGUFReader``, which knows them all.
    """
    import gguf
    from transformers.integrations.gguf import GgufHeader

    try:
        types = GgufHeader.from_file(str(path)).ggml_types.values()
    except ValueError:  # a type transformers' reader cannot size
        return Counter(tensor.tensor_type.name for tensor in gguf.GGUFReader(str(path)).tensors)
    return Counter(gguf.GGMLQuantizationType(value).name for value in types)


def starts_like_gguf(path: Path) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic bytes (a cheap test before hashing it)."""
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def read_summary(path: str | Path) -> GgufSummary:
    """Read and check a GGUF file's header: it exists, is GGUF, and holds an architecture and
    tensor types transformers can load. Only the header is read.

    Raises:
        GgufError: one line naming the file: missing, not GGUF (wrong magic bytes), an unreadable
            header, an architecture or tensor types that cannot be read (naming what can).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise GgufError(f"{path}: no such GGUF file")
    if path.is_dir():
        raise GgufError(f"{path}: a directory, not a GGUF file; expected a .gguf file")
    if not path.is_file():  # a FIFO or a device would be read without end
        raise GgufError(f"{path}: is not a regular file (a FIFO, device or socket); expected a .gguf file")
    with open(path, "rb") as handle:
        magic = handle.read(len(MAGIC))
    if magic != MAGIC:
        raise GgufError(f"{path}: not a GGUF file (starts with {magic!r}); expected the magic bytes {MAGIC!r}")
    from transformers.integrations.gguf import read_gguf_metadata

    try:
        metadata, _ = read_gguf_metadata(str(path))
        architecture = metadata.get("general.architecture")
        types = _tensor_types(path) if architecture in supported_architectures() else Counter()
    except (ValueError, IndexError, KeyError, OSError, OverflowError, struct.error) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GgufError(f"{path}: a GGUF header that cannot be read ({first}); the file may be truncated") from None
    if not isinstance(architecture, str):
        raise GgufError(f"{path}: no general.architecture in the GGUF metadata; expected a model file")
    if architecture not in supported_architectures():
        import transformers

        raise GgufError(f"{path}: GGUF architecture {architecture!r} cannot be loaded as a causal LM by transformers "
                        f"{transformers.__version__}; supported: {', '.join(supported_architectures())}")
    unreadable = sorted(set(types) - set(supported_tensor_types()))
    if unreadable:
        found = ", ".join(f"{name} ({types[name]} tensors)" for name in unreadable)
        raise GgufError(f"{path}: tensor type {found} cannot be dequantized by gguf {_gguf_version()}; "
                        f"supported: {', '.join(supported_tensor_types())}")
    name = metadata.get("general.name")
    return GgufSummary(
        path=path,
        architecture=architecture,
        name=name if isinstance(name, str) else path.stem,
        tensor_types=dict(types.most_common()),
        chat_template=isinstance(metadata.get("tokenizer.chat_template"), str),
    )


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")
