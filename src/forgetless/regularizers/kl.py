"""``kl``: β · KL(p_θ* ‖ p_θ) over the full vocabulary, on replay inputs.

The explicit form of context-free replay (arXiv 2505.13811; docs/methods.md#kl
and docs/methods.md#context-free-replay): instead of training on samples of the base model, which estimates this KL
by Monte Carlo over sequences, compare the two next-token distributions exactly at
every position of replay inputs,

    penalty = β · mean over positions t of  Σ_v p_θ*(v | x_<t) (log p_θ*(v | x_<t) − log p_θ(v | x_<t)).

Inputs (**open** in the source; configurable here):

- ``data`` given: a replay file (``forgetless generate`` output, a corpus slice, or
  any training-format file); each micro-batch draws its own ``batch_size`` replay
  rows from it (seeded, reshuffled every pass) and runs one extra forward pass of θ;
- ``data`` omitted: the training micro-batch itself (every non-padding position),
  reusing its logits, so only the base model's forward is extra.

Base logits come from PEFT's disabled adapter when the model is a LoRA model (no
second copy of the weights), else from one frozen copy of θ* taken in ``prepare``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from forgetless.data.collate import PadCollator
from forgetless.regularizers.base import Regularizer
from forgetless.replay.mixing import load_replay_examples


def full_vocab_kl(base_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions of KL(softmax(base_logits) ‖ softmax(logits)).

    Args:
        base_logits: ``[B, T, V]`` logits of the reference (no gradient needed).
        logits: ``[B, T, V]`` logits of the trained model.
        mask: ``[B, T]`` bool, positions that count.

    Returns:
        A scalar in fp32, with gradient through ``logits``.
    """
    base_logp = F.log_softmax(base_logits.float(), dim=-1)
    logp = F.log_softmax(logits.float(), dim=-1)
    per_position = (base_logp.exp() * (base_logp - logp)).sum(-1)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


def _peft_model(model: torch.nn.Module) -> Any:
    """The PEFT model inside ``model`` (possibly DDP-wrapped), or None."""
    inner = getattr(model, "module", model)
    try:
        from peft import PeftModel
    except ImportError:
        return None
    return inner if isinstance(inner, PeftModel) else None


class KLParams(BaseModel):
    """The parameters of ``kl`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    beta: float = Field(1.0, ge=0, description="β, the penalty's weight.")
    data: str | None = Field(None, description="Replay file whose inputs the KL is taken on (one extra forward pass "
                             "per micro-batch); null: the training micro-batch itself.")
    batch_size: int = Field(8, ge=1, description="Replay rows drawn per micro-batch (with data).")
    max_length: int = Field(256, ge=2, description="Maximum tokens per replay row.")
    seed: int = Field(0, description="Seed of the replay rows' order.")


class KLRegularizer(Regularizer):
    """β · KL(p_θ* ‖ p_θ) on replay inputs; see the module docstring."""

    name = "kl"
    params_model = KLParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p: KLParams = self.params
        self.beta, self.data, self.batch_size, self.max_length = p.beta, p.data, p.batch_size, p.max_length
        self.seed = p.seed
        self._base: torch.nn.Module | None = None
        self._examples: list[dict[str, Any]] = []
        self._order: list[int] = []
        self._collate: Any = None
        self._generator: torch.Generator | None = None
        self._prepared = False
        self._last = 0.0

    def prepare(self, trainer: Any) -> None:
        """Keep θ* (unless the model is a LoRA model) and load the replay data."""
        model = trainer.model
        if _peft_model(model) is None:
            # A frozen copy of θ*, taken before the first step.
            self._base = copy.deepcopy(getattr(model, "module", model)).eval()
            self._base.requires_grad_(False)
        if self.data is not None:
            tokenizer = trainer.processing_class
            self._examples = load_replay_examples(self.data, tokenizer, self.max_length, completion_only=False)
            self._collate = PadCollator(tokenizer.pad_token_id)
            rank = getattr(trainer.args, "process_index", 0)
            self._generator = torch.Generator().manual_seed(self.seed * 1000 + rank)
        self._prepared = True

    def _replay_batch(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The next ``batch_size`` replay rows (a fresh shuffle after each pass)."""
        rows = []
        while len(rows) < self.batch_size:
            if not self._order:
                self._order = torch.randperm(len(self._examples), generator=self._generator).tolist()
            rows.append(self._examples[self._order.pop()])
        batch = self._collate([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
        return {k: v.to(device) for k, v in batch.items()}

    @torch.no_grad()
    def _base_logits(self, model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        peft = _peft_model(model)
        if peft is not None:
            with peft.disable_adapter():
                return peft(input_ids=ids, attention_mask=attention).logits
        assert self._base is not None
        return self._base(input_ids=ids, attention_mask=attention).logits

    @property
    def reads_batch_logits(self) -> bool:
        """Without replay data the KL is taken on the training batch's own logits."""
        return self.data is None

    def penalty(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
        """β · mean KL(p_θ* ‖ p_θ) over the positions that predict a real next token."""
        if not self._prepared:
            raise RuntimeError("kl: prepare(trainer) must run before training (make_trainer does it)")
        if self.data is not None:
            batch = self._replay_batch(inputs["input_ids"].device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        else:
            batch, logits = inputs, outputs.logits
        attention = batch["attention_mask"]
        base = self._base_logits(model, batch["input_ids"], attention)
        # Position t predicts token t+1: count it when that token is real.
        mask = attention[:, 1:].bool()
        kl = full_vocab_kl(base[:, :-1], logits[:, :-1], mask)
        self._last = float(kl.detach())
        return self.beta * kl

    def stats(self) -> dict[str, float]:
        """KL(p_θ* ‖ p_θ) per position at the last penalty (before β)."""
        return {"kl": self._last}

    def report(self) -> dict[str, Any]:
        """Parameters and where the base logits came from."""
        return {"beta": self.beta, "data": self.data, "batch_size": self.batch_size,
                "replay_examples": len(self._examples), "base": "frozen copy" if self._base is not None else "peft disabled adapter"}
