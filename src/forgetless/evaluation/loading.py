"""Load anything that looks like a model for evaluation: a checkpoint directory, a
LoRA adapter directory, a hub id, or ``testbed:PRESET``.

Weights are read from safetensors only (``forgetless.model_loading``): a pickle
checkpoint is refused rather than unpickled. ``trust_remote_code`` is off unless asked.
In-memory models need no loading: pass ``(model, tokenizer)`` to
``forgetless.evaluation.report.evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless.model_loading import load_adapter, load_causal_lm


def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()


def load_model(
    spec: str, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, PreTrainedTokenizerBase, str]:
    """Load ``(model, tokenizer, resolved path)`` for evaluation.

    A directory with ``adapter_config.json`` is a PEFT (LoRA) adapter: its base model
    (``base_model_name_or_path``, which may itself be ``testbed:PRESET``) is loaded,
    the adapter applied and merged, so evaluation runs at the base model's speed.
    The tokenizer comes from the adapter directory when it has one, else from the base.

    Raises:
        ValueError: ``spec`` looks like a local path but does not exist (a ValueError so the CLI
            reports it in one line).
    """
    from forgetless.training.run import load_tokenizer, resolve_model

    resolved = resolve_model(spec)
    path = Path(resolved)
    # A hub id ("org/name") may legitimately not exist locally; a filesystem path must.
    if not path.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") > 1):
        raise ValueError(f"{spec}: no such model directory")
    adapter_config = path / "adapter_config.json"
    if adapter_config.exists():
        base_spec = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not isinstance(base_spec, str):
            raise ValueError(f"{adapter_config}: expected a string 'base_model_name_or_path'")
        base_path = resolve_model(base_spec)
        base = load_causal_lm(base_path, dtype, trust_remote_code)
        model = load_adapter(base, resolved).merge_and_unload()
        tokenizer = load_tokenizer(resolved if _has_tokenizer(path) else base_path, trust_remote_code)
    else:
        model = load_causal_lm(resolved, dtype, trust_remote_code)
        tokenizer = load_tokenizer(resolved, trust_remote_code)
    model.eval()
    return model, tokenizer, resolved
