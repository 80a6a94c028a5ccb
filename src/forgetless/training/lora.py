"""LoRA through PEFT: wrap a model for training, export merged weights as a plain checkpoint.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv 2106.09685).
Defaults (docs/methods.md#lora): r = 64, alpha = 64, every linear layer except the output head
(PEFT's ``all-linear``). The exported model has ΔW = (alpha/r)·B·A merged into each
weight, so it loads with ``AutoModelForCausalLM.from_pretrained`` and no PEFT.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel


def apply_lora(
    model: PreTrainedModel, r: int = 64, alpha: float = 64.0, dropout: float = 0.0, target_modules: str = "all-linear"
) -> PeftModel:
    """Freeze ``model`` and add LoRA adapters to ``target_modules``.

    Args:
        model: the base causal LM (θ*).
        r: adapter rank.
        alpha: scaling numerator; ΔW = (alpha / r)·B·A.
        dropout: dropout on the adapter input.
        target_modules: ``all-linear`` or a comma-separated list of module names
            (e.g. ``q_proj,v_proj``).
    """
    targets: str | list[str] = (
        target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",") if t.strip()]
    )
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_merged(model: torch.nn.Module, directory: str | Path, dtype: torch.dtype | None = None) -> None:
    """Merge the adapters into a copy-free base model and save it as plain safetensors.

    Args:
        model: the trained PEFT model; consumed: after this call use the written checkpoint.
        directory: where the merged model is saved.
        dtype: dtype written (e.g. the base's bf16); None keeps the model's. ΔW is added
            to the weights in their training dtype (fp32 master weights) and the sum is
            rounded once, when cast.
    """
    if not isinstance(model, PeftModel):
        raise TypeError(f"save_merged expects a PeftModel, got {type(model).__name__}")
    merged = model.merge_and_unload()
    if dtype is not None:
        merged.to(dtype)
    merged.save_pretrained(str(directory), safe_serialization=True)
