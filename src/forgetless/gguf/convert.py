"""Convert a GGUF file into an ordinary safetensors checkpoint.

transformers reads a GGUF with ``from_pretrained(DIR, gguf_file=NAME)``: it rebuilds the
config from the ``<arch>.*`` metadata, dequantizes every tensor to fp32 (with the
``gguf`` package's ``dequantize``) and undoes llama.cpp's row order for the query and
key projections. The model it returns refuses ``save_pretrained`` ("quantized with gguf
and is not serializable"): it still carries the GGUF quantizer. So the weights are moved
into a fresh model built from the same config with the quantization entry removed, cast
once from fp32 to the dtype asked for, and saved; the tokenizer (built from
``tokenizer.ggml.*``, chat template included) and the generation config (BOS, EOS, PAD
from the file) are saved beside them. ``trust_remote_code`` is never set: the
architectures transformers reads from GGUF are all built in.

A fp32 conversion holds the dequantized values exactly (F32 and F16 tensors bit for bit,
quantized ones as ``gguf.dequantize`` expands them); bf16 and fp16 round those fp32
values once. Peak memory is about the fp32 model plus the output model (1.2 GB for the
135M-parameter SmolLM2; see docs/real-models.md).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from forgetless.atomic import atomic_dir, write_json
from forgetless.dtypes import parse_dtype, short_name
from forgetless.gguf.header import GgufError, GgufSummary, read_summary
from forgetless.models import check_finite_weights, load_saved_tokenizer

if TYPE_CHECKING:  # transformers is heavy to import; it is imported where a file is converted
    from transformers import PreTrainedModel

# Written next to the weights: where they came from, for the cache and for a reader of the directory.
SOURCE_FILE = "gguf_source.json"


def _load_dequantized(summary: GgufSummary) -> PreTrainedModel:
    """The GGUF's model in fp32, as transformers' GGUF loader builds it (still bound to its quantizer)."""
    from transformers import AutoModelForCausalLM, GgufConfig

    path = summary.path.resolve()
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32, trust_remote_code=False,
            # Architectures with transformers' packed-GGUF layers would otherwise keep quantized blocks
            # in the state dict; the others are dequantized whatever this says.
            quantization_config=GgufConfig(gguf_file=path.name, dequantize=True),
        )
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GgufError(f"{summary.path}: transformers could not load this {summary.architecture} GGUF "
                        f"({first})") from None


def _serializable_copy(model: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """A fresh model of ``model``'s config, without the GGUF quantizer, holding its weights in ``dtype``."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    config = model.config
    for leftover in ("quantization_config", "_model_name_or_path"):  # the GGUF loader's, not the model's
        if hasattr(config, leftover):
            delattr(config, leftover)
    config.dtype = dtype
    with no_init_weights():  # every weight is overwritten below; initializing SmolLM2's took 5 s of a 40 s conversion
        fresh = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
    # A tied tensor appears under two names (as two views of one storage): cast it once.
    cast: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
    state = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in cast:
            cast[key] = tensor.to(dtype)
        state[name] = cast[key]
    # Every key must match (strict): a weight left uninitialized would pass unnoticed otherwise. assign: the
    # cast tensors become the parameters, rather than being copied into a second set.
    fresh.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        # llama.cpp stores no output.weight when the head is the embedding; no_init_weights skipped the tying
        fresh.tie_weights()
    fresh.generation_config = model.generation_config
    return fresh.eval()


def _save_tokenizer(summary: GgufSummary, output: Path) -> None:
    """The tokenizer transformers builds from ``tokenizer.ggml.*`` (with its chat template), saved to ``output``."""
    path = summary.path.resolve()
    try:
        tokenizer = load_saved_tokenizer(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GgufError(f"{summary.path}: transformers could not build the tokenizer ({first})") from None
    tokenizer.save_pretrained(str(output))


def write_checkpoint(summary: GgufSummary, output: Path, dtype: torch.dtype, sha256: str | None = None) -> None:
    """Write the converted model, tokenizer and generation config into the (empty) directory ``output``."""
    model = _load_dequantized(summary)
    fresh = _serializable_copy(model, dtype)
    del model  # the fp32 copy is the largest thing held; let it go before serializing
    # Checked after the cast: a fp32 value past 65504 is inf in fp16, and a GGUF may hold NaN or inf outright; a
    # converted model with such weights would load, and train or score as nonsense, with nothing said.
    fix = ("convert with --dtype fp32 (or bf16)" if dtype == torch.float16 else "the GGUF file holds NaN or inf")
    check_finite_weights(fresh, summary.path, f"nothing was written; {fix}", GgufError)
    fresh.save_pretrained(str(output), safe_serialization=True)
    _save_tokenizer(summary, output)
    write_json(output / SOURCE_FILE, {
        "file": str(summary.path.resolve()),
        "sha256": sha256,
        "architecture": summary.architecture,
        "name": summary.name,
        "tensor_types": summary.tensor_types,
        "chat_template": summary.chat_template,
        "dtype": short_name(dtype),
        "transformers": version("transformers"),
        "gguf": version("gguf"),
    })


def convert_gguf(file: str | Path, output: str | Path, dtype: str = "bf16", overwrite: bool = False,
                 sha256: str | None = None) -> Path:
    """Convert the GGUF ``file`` into a safetensors checkpoint directory at ``output``.

    Args:
        file: a ``.gguf`` file (llama.cpp's format) of an architecture transformers reads.
        output: the directory to write; it appears only when complete (temporary sibling, then rename).
        dtype: ``bf16`` (default, as real checkpoints ship), ``fp16`` or ``fp32`` (the dequantized values exactly).
        overwrite: replace an existing ``output``.
        sha256: the file's digest when the caller has it, recorded in ``gguf_source.json``.

    Returns:
        ``output``, which ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load.

    Raises:
        GgufError: a missing file, a file that is not GGUF, an architecture or tensor type transformers cannot read.
        FileExistsError: ``output`` exists and ``overwrite`` is False.
    """
    torch_dtype = parse_dtype(dtype)
    summary = read_summary(file)
    output = Path(output)
    with atomic_dir(output, overwrite=overwrite) as tmp:
        write_checkpoint(summary, tmp, torch_dtype, sha256)
    return output


def source_record(directory: str | Path) -> dict[str, object] | None:
    """The ``gguf_source.json`` of a converted directory, or None when it has none."""
    record = Path(directory) / SOURCE_FILE
    return json.loads(record.read_text()) if record.is_file() else None
