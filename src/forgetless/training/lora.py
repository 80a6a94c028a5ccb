"""LoRA through PEFT: wrap a model for training, export merged weights as a plain checkpoint.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv 2106.09685).
Defaults (docs/methods.md#lora): r = 64, alpha = 64, every linear layer except the output head
(PEFT's ``all-linear``). The exported model has ΔW = (alpha/r)·B·A merged into each
weight, so it loads with ``AutoModelForCausalLM.from_pretrained`` and no PEFT.

Target modules may be named by group, ``attention`` and ``mlp``, resolved per
architecture from ``MODULE_GROUPS`` (data, keyed by transformers' ``model_type``), so one
config adapts the attention of a Llama, a Phi-3 (fused ``qkv_proj``) and a GPT-2
(``attn.c_attn``) alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

_LLAMA_LIKE = {"attention": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
# Each architecture's attention and MLP projections, as module-path suffixes (PEFT adapts a
# module whose dotted path ends in ".NAME"), read off transformers' modeling files. Suffixes
# of two parts where one part is ambiguous: GPT-2's attention and MLP both have a c_proj.
MODULE_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "phi3": {"attention": ("self_attn.qkv_proj", "self_attn.o_proj"), "mlp": ("mlp.gate_up_proj", "mlp.down_proj")},
    "gpt_neox": {"attention": ("attention.query_key_value", "attention.dense"),
                 "mlp": ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h")},
    "gpt2": {"attention": ("attn.c_attn", "attn.c_proj"), "mlp": ("mlp.c_fc", "mlp.c_proj")},
}
GROUPS = ("attention", "mlp")


def resolve_target_modules(model: PreTrainedModel, target_modules: str) -> str | list[str]:
    """PEFT's ``target_modules`` for ``model``: ``all-linear``, or module-name suffixes.

    Args:
        model: the base model (its ``config.model_type`` picks the group names).
        target_modules: ``all-linear``, or a comma-separated list of groups (``attention``,
            ``mlp``) and module names (``q_proj``, ``attn.c_attn``).

    Raises:
        ValueError: a group for an architecture ``MODULE_GROUPS`` does not know, or a name
            that matches no module of the model (naming the model's linear layers).
    """
    if target_modules.strip() == "all-linear":
        return "all-linear"
    model_type = getattr(model.config, "model_type", None)
    names: list[str] = []
    for item in (t.strip() for t in target_modules.split(",")):
        if not item:
            continue
        if item in GROUPS:
            if model_type not in MODULE_GROUPS:
                raise ValueError(f"lora_target_modules: the {item!r} group is not known for model_type {model_type!r} "
                                 f"(known: {sorted(MODULE_GROUPS)}); name the modules instead, e.g. q_proj,v_proj")
            names.extend(MODULE_GROUPS[model_type][item])
        else:
            names.append(item)
    if not names:
        raise ValueError("lora_target_modules: empty; expected all-linear, attention, mlp or module names")
    paths = [name for name, _ in model.named_modules()]
    for name in names:
        if not any(path == name or path.endswith("." + name) for path in paths):
            linear = sorted({path.rsplit(".", 1)[-1] for path, module in model.named_modules()
                             if type(module).__name__ in ("Linear", "Conv1D")})
            raise ValueError(f"lora_target_modules: {name!r} matches no module of this {model_type} model; "
                             f"its linear layers are named {linear}")
    return list(dict.fromkeys(names))


def apply_lora(
    model: PreTrainedModel, r: int = 64, alpha: float = 64.0, dropout: float = 0.0, target_modules: str = "all-linear"
) -> PeftModel:
    """Freeze ``model`` and add LoRA adapters to ``target_modules``.

    Args:
        model: the base causal LM (θ*).
        r: adapter rank.
        alpha: scaling numerator; ΔW = (alpha / r)·B·A.
        dropout: dropout on the adapter input.
        target_modules: ``all-linear``, or a comma-separated list of groups (``attention``,
            ``mlp``, resolved per architecture) and module names (e.g. ``q_proj,v_proj``).
    """
    targets = resolve_target_modules(model, target_modules)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_merged(model: torch.nn.Module, directory: str | Path, dtype: torch.dtype | None = None,
                check: Callable[[torch.nn.Module], None] | None = None) -> None:
    """Merge the adapters into a copy-free base model and save it as plain safetensors.

    Args:
        model: the trained PEFT model; consumed: after this call use the written checkpoint.
        directory: where the merged model is saved.
        dtype: dtype written (e.g. the base's bf16); None keeps the model's. ΔW is added
            to the weights in their training dtype (fp32 master weights) and the sum is
            rounded once, when cast.
        check: called with the merged, cast model before it is saved (the caller's refusal of non-finite weights).
    """
    if not isinstance(model, PeftModel):
        raise TypeError(f"save_merged expects a PeftModel, got {type(model).__name__}")
    merged = model.merge_and_unload()
    if dtype is not None:
        merged.to(dtype)
    if check is not None:
        check(merged)
    merged.save_pretrained(str(directory), safe_serialization=True)
