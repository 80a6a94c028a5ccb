"""LoRA adapter directories as merge inputs: merged into their base model first.

A PEFT adapter directory holds only the low-rank factors; to combine it with full
checkpoints it is folded into its base (``merge_and_unload``, PEFT) and saved as
safetensors in a temporary directory that lives as long as the merge.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path

from forgetless.merging.errors import MergeError


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is a PEFT adapter directory (it has ``adapter_config.json``)."""
    return (Path(path) / "adapter_config.json").is_file()


def materialize_adapter(path: str | Path, stack: ExitStack, base: str | None = None,
                        trust_remote_code: bool = False) -> Path:
    """Merge a LoRA adapter into its base and save the result to a temporary directory.

    Args:
        path: the adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``).
        stack: owns the temporary directory; it is removed when the stack closes.
        base: the base model; default: ``base_model_name_or_path`` from the adapter config.
        trust_remote_code: passed to ``from_pretrained``.

    Returns:
        A model directory with safetensors weights, config and tokenizer (if the adapter has one).
    """
    # imported here: the merge flags are built without peft or transformers
    from forgetless.models import load_adapter, load_causal_lm, load_saved_tokenizer

    path = Path(path)
    if not (path / "adapter_model.safetensors").is_file():
        raise MergeError(f"{path}: adapter directory without adapter_model.safetensors (pickled adapters are refused)")
    base = base or json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise MergeError(f"{path}: adapter_config.json names no base_model_name_or_path; pass the base explicitly")
    base_path = base  # testbed: specs are resolved by the entry points
    # The dtype of the base on disk is kept, so the merged adapter matches full checkpoints.
    model = load_causal_lm(base_path, "auto", trust_remote_code)
    merged = load_adapter(model, path).merge_and_unload()
    out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forgetless-adapter-")))
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer_source = path if (path / "tokenizer_config.json").is_file() else Path(base_path)
    if (tokenizer_source / "tokenizer_config.json").is_file():
        load_saved_tokenizer(tokenizer_source, trust_remote_code).save_pretrained(out)
    del model, merged
    return out
