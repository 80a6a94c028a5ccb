"""``flow`` and ``flow_token``: upweight samples (tokens) the base model finds easy.

Source: "Upweighting Easy Samples in Fine-Tuning Mitigates Forgetting" (FLOW,
arXiv 2502.02797). Before training, one no-grad pass of the **base** model θ* over the
training set gives each sample's mean completion-token loss ℓ̄_i(θ*) (prompt tokens
masked, as in training); τ is the median of those losses and

    w_i = exp(−ℓ̄_i(θ*) / τ),

one weight per sample, fixed for the whole run. The weight travels with the example
as its ``sample_weight`` (multiplying any weight the data already carries), so it
survives shuffling, length grouping and sharding over processes, and the trainer
reduces ``Σ w_i ℓ_t / N`` over the global batch like every objective: the gradients
do not depend on the batch layout.

``flow_token`` is the token-level variant of the authors' code: w_t = exp(−ℓ_t(θ*)/τ)
with τ the (lower) median of all supervised base token losses; the weights are looked
up per example by its token ids (so, again, shuffling and sharding do not matter).

Open choices (docs/methods.md#flow), as parameters: ``normalize: false`` (the paper;
a median sample gets e^{-1}, so with equal base losses the loss is ``nll`` scaled by
e^{-1}) or ``mean`` (weights divided by their mean over the training samples, resp.
supervised tokens, so equal base losses give exactly ``nll``); ``batch_size`` of the
pre-pass.

The base losses are cached, keyed by a hash of the model's parameters and of the
encoded examples, in the trainer's ``cache_dir`` (next to the data), so the pass is
paid once per (model, data).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from forgetless.losses import token_nll
from forgetless.objectives.base import Objective

_CACHE_VERSION = "flow-v1"


def parameters_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameter names, dtypes and bytes (what the base losses depend on)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(param.dtype).encode())
        digest.update(param.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def examples_hash(examples: list[dict[str, Any]]) -> str:
    """SHA-256 of the encoded examples' token ids and labels."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(torch.tensor(example["input_ids"], dtype=torch.int64).numpy().tobytes())
        digest.update(torch.tensor(example["labels"], dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def base_token_losses(trainer: Any, examples: list[dict[str, Any]], batch_size: int) -> list[torch.Tensor]:
    """One no-grad pass of ``trainer.model`` (θ*, before training) over ``examples``.

    Returns:
        For each example, ``[T_i − 1]`` fp32 losses of predicting token ``t+1``, NaN
        where the target is not supervised.
    """
    model = trainer.model
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))  # less padding
    out: list[torch.Tensor] = [torch.empty(0)] * len(examples)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = trainer.data_collator([examples[i] for i in rows])
        batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
        with trainer.autocast_smart_context_manager():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, mask = token_nll(logits, batch["labels"])
        loss = loss.float().masked_fill(~mask, float("nan")).cpu()
        for j, i in enumerate(rows):
            out[i] = loss[j, : len(examples[i]["input_ids"]) - 1].clone()
    model.train(was_training)
    return out


class FLOWParams(BaseModel):
    """The open choices of FLOW and flow_token (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    normalize: Literal[False, "false", "none", "mean"] = Field(
        False, description="false (the paper; 'false' and 'none' say the same): w = exp(−ℓ̄(θ*)/τ) as is; mean: "
        "weights divided by their mean over the training samples (tokens), so equal base losses give exactly nll.")
    batch_size: int = Field(16, ge=1, description="Examples per forward pass of the base model's pre-pass.")


class FLOW(Objective):
    """Sample-level FLOW: per-sample weights from the base model, set once in ``prepare``."""

    name = "flow"
    params_model = FLOWParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p: FLOWParams = self.params
        self.normalize = "mean" if p.normalize == "mean" else False
        self.batch_size = p.batch_size
        self._report: dict[str, Any] = {}
        self._stats: dict[str, float] = {}

    # -- the pre-pass ---------------------------------------------------------------

    def _base_losses(self, trainer: Any, examples: list[dict[str, Any]]) -> tuple[list[torch.Tensor], bool]:
        """Base token losses per example, from the cache when present (returns ``(losses, cache_hit)``)."""
        cache_dir = getattr(trainer, "cache_dir", None)
        path = None
        if cache_dir is not None:
            key = hashlib.sha256(
                f"{_CACHE_VERSION}:{parameters_hash(trainer.model)}:{examples_hash(examples)}".encode()
            ).hexdigest()[:32]
            path = Path(cache_dir) / f"flow-{key}.safetensors"
        with trainer.accelerator.main_process_first():  # rank 0 computes and caches, the others read
            if path is not None and path.is_file():
                tensors = load_file(str(path))
                offsets = tensors["offsets"].tolist()
                flat = tensors["token_loss"]
                return [flat[offsets[i] : offsets[i + 1]] for i in range(len(examples))], True
            losses = base_token_losses(trainer, examples, self.batch_size)
            if path is not None and trainer.accelerator.is_main_process:
                lengths = torch.tensor([0] + [len(x) for x in losses], dtype=torch.int64)
                tmp = path.with_name(path.name + ".tmp")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_file({"token_loss": torch.cat(losses), "offsets": lengths.cumsum(0)}, str(tmp))
                    tmp.replace(path)
                except OSError:
                    pass  # an unwritable cache only costs the pass next time
            return losses, False

    def prepare(self, trainer: Any) -> None:
        """Run (or load) the base-model pass and attach the weights to ``trainer.train_dataset``."""
        examples = trainer.train_dataset
        start = time.perf_counter()
        losses, hit = self._base_losses(trainer, examples)
        seconds = time.perf_counter() - start
        weights = self._apply(examples, losses)
        counts, edges = torch.histogram(weights.double(), bins=10)
        self._report = {
            "normalize": self.normalize,
            "tau": self._tau,
            "prepass_seconds": seconds,
            "cache_hit": hit,
            "weight_mean": float(weights.mean()),
            "weight_min": float(weights.min()),
            "weight_max": float(weights.max()),
            "weight_histogram": {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]},
        }
        self._stats = {"tau": self._tau, "prepass_seconds": seconds}

    def _apply(self, examples: list[dict[str, Any]], losses: list[torch.Tensor]) -> torch.Tensor:
        """Set each example's ``sample_weight``; returns the ``[n]`` FLOW weights."""
        means = torch.stack([x[~x.isnan()].mean() if (~x.isnan()).any() else torch.tensor(float("nan")) for x in losses])
        valid = means[~means.isnan()]
        if valid.numel() == 0:
            raise ValueError(f"{self.name}: no training example has a supervised token")
        self._tau = max(float(valid.median()), 1e-6)
        weights = torch.exp(-means.nan_to_num(0.0) / self._tau)
        if self.normalize == "mean":
            weights = weights / weights[~means.isnan()].mean()
        for example, weight in zip(examples, weights.tolist()):
            example["sample_weight"] = float(example.get("sample_weight", 1.0)) * weight
        return weights[~means.isnan()]

    def weights(self, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """All-ones ``[B, T]``: the FLOW weight arrives as ``batch["sample_weight"]``."""
        if "sample_weight" not in batch:
            raise RuntimeError("flow: the batch has no sample_weight; prepare() must run before training")
        return torch.ones_like(token_loss)

    def stats(self) -> dict[str, float]:
        """τ and the pre-pass time (constant over the run)."""
        return dict(self._stats)

    def report(self) -> dict[str, Any]:
        """τ, the weight histogram, the pre-pass time and whether the cache was hit."""
        return dict(self._report)


class FLOWToken(FLOW):
    """Token-level FLOW: w_t = exp(−ℓ_t(θ*)/τ), τ the median base token loss; looked up by token ids."""

    name = "flow_token"

    def _apply(self, examples: list[dict[str, Any]], losses: list[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat(losses)
        valid = flat[~flat.isnan()]
        if valid.numel() == 0:
            raise ValueError(f"{self.name}: no training example has a supervised token")
        self._tau = max(float(valid.median()), 1e-6)
        scale = float(torch.exp(-valid / self._tau).mean()) if self.normalize == "mean" else 1.0
        self._lookup: dict[bytes, torch.Tensor] = {}
        for example, loss in zip(examples, losses):
            key = self._key(torch.tensor(example["input_ids"]))
            self._lookup[key] = (torch.exp(-loss.nan_to_num(math.inf) / self._tau) / scale).float()
        return torch.exp(-valid / self._tau) / scale

    @staticmethod
    def _key(ids: torch.Tensor) -> bytes:
        return hashlib.blake2b(ids.to(torch.int64).cpu().numpy().tobytes(), digest_size=16).digest()

    def weights(self, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, T]`` base-model token weights of each row, found by the row's unpadded token ids."""
        if not hasattr(self, "_lookup"):
            raise RuntimeError("flow_token: prepare() must run before training")
        out = torch.ones_like(token_loss)
        lengths = batch["attention_mask"].sum(1).tolist()
        for row, n in enumerate(lengths):
            found = self._lookup.get(self._key(batch["input_ids"][row, :n]))
            if found is None:
                raise KeyError(f"flow_token: batch row {row} is not a training example seen by prepare()")
            out[row, : n - 1] = found.to(out.device, out.dtype)
        return out
