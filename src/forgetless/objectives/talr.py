"""``talr``: Token-Adaptive Loss Reweighting with a batch-adaptive temperature.

Source: arXiv 2509.20758 ("SFT Doesn't Always Hurt General Capabilities"). The
weights solve ``min_{w ∈ simplex} Σ_t w_t ℓ_t + τ Σ_t w_t log w_t``, whose solution is
``w_t ∝ exp(−ℓ_t / τ) = p_θ(y_t)^{1/τ}``: easy tokens are upweighted, hard tokens —
whose gradients move the model furthest from what it knew — are damped.

Scope of the batch statistic (τ, the floor and the normalization). With
``scope: global`` (the default) they are computed over the supervised tokens of the
**global batch**: every gradient-accumulation micro-batch of the optimizer step on
every data-parallel rank (token losses are gathered across ranks). The weights, and
so the gradients, are then the same for any batch layout (1 × 8, 4 × 2, two processes
× 4). The ``ForgetlessTrainer`` delivers those statistics: with one micro-batch on
one process it fits them on the live forward pass at no cost; otherwise the statistics
are needed before the first backward of the step, so it runs one extra no-grad
forward over the step's micro-batches (about one third of a step's compute) and gathers
the losses across ranks. ``scope: micro_batch`` fits them on each micro-batch's own
losses instead: no extra forward, but the weights then depend on the batch layout
(the paper's per-batch recipe with a batch equal to the micro-batch).

Open choices (docs/methods.md#talr), as parameters with their defaults:

* ``tau``: ``token_median`` (the lower median of the supervised token losses),
  ``sample_median`` (the lower median of per-sample mean token losses), or a number.
* ``floor``: w_min as a fraction of the mean weight, default 0.01; applied before
  normalization, so after it the smallest weight is ``floor`` of the pre-floor mean.
* ``normalize``: ``mean`` (default) rescales the weights to mean 1 over the supervised
  tokens of the global batch, so the loss scale matches ``nll``; ``none`` keeps
  ``exp(−ℓ_t/τ)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from forgetless.objectives.base import Objective


class TALRParams(BaseModel):
    """The open choices of TALR (see the module docstring), with the defaults of this implementation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tau: Literal["token_median", "sample_median"] | PositiveFloat = Field(
        "token_median", description="Temperature τ of w_t ∝ exp(−ℓ_t/τ): the lower median of the batch's supervised "
        "token losses, of its per-sample mean token losses, or a fixed number.")
    floor: float = Field(0.01, ge=0, lt=1, description="w_min as a fraction of the mean weight, applied before "
                         "normalization.")
    normalize: Literal["mean", "none"] = Field("mean", description="mean: weights rescaled to mean 1 over the "
                                               "batch's supervised tokens (the loss scale of nll); none: exp(−ℓ_t/τ).")
    scope: Literal["global", "micro_batch"] = Field(
        "global", description="Batch the statistics are fitted on: the global batch (weights independent of the "
        "batch layout) or each micro-batch (no extra forward pass).")


class TALR(Objective):
    """w_t = max(exp(−ℓ_t/τ), floor·mean) / normalizer, stop-gradient; see the module docstring."""

    name = "talr"
    params_model = TALRParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p: TALRParams = self.params
        self.tau, self.floor, self.normalize, self.scope = p.tau, p.floor, p.normalize, p.scope
        self.statistic_scope = self.scope
        self._fit: dict[str, float] | None = None
        self._stats: dict[str, float] = {}

    def fit(self, losses: torch.Tensor, sample_losses: torch.Tensor) -> None:
        """Fit τ, the floor and the normalizer on one batch's statistics.

        Args:
            losses: ``[M]`` the supervised token losses of the batch (the global batch
                under ``scope: global``).
            sample_losses: ``[S]`` the mean supervised token loss of each sample with at
                least one supervised token.
        """
        losses = losses.detach().double()
        if losses.numel() == 0:
            self._fit = {"tau": 1.0, "shift": 0.0, "floor": 0.0, "norm": 1.0}
            return
        if self.tau == "token_median":
            tau = float(losses.median())
        elif self.tau == "sample_median":
            tau = float(sample_losses.detach().double().median())
        else:
            tau = float(self.tau)
        tau = max(tau, 1e-6)  # a batch of perfectly predicted tokens has median 0
        # The shift only rescales exp(-l/tau) by a constant, which normalization undoes;
        # it keeps the largest weight at 1 so nothing underflows or overflows.
        shift = float(losses.min()) if self.normalize == "mean" else 0.0
        raw = torch.exp(-(losses - shift) / tau)
        floor = self.floor * float(raw.mean())
        floored = raw.clamp(min=floor)
        norm = float(floored.mean()) if self.normalize == "mean" else 1.0
        self._fit = {"tau": tau, "shift": shift, "floor": floor, "norm": norm}
        weights = floored / norm
        self._stats = {
            "tau": tau,
            "weight_std": float(weights.std(unbiased=False)),
            "weight_min": float(weights.min()),
            "weight_max": float(weights.max()),
            "floored_fraction": float((raw < floor).double().mean()),
        }

    def weights(self, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, T]`` weights from the last ``fit`` (called by the trainer before each step)."""
        if self._fit is None:
            raise RuntimeError("talr: fit() must run on the batch statistics before weights()")
        fit = self._fit
        raw = torch.exp(-(token_loss.double() - fit["shift"]) / fit["tau"])
        return (raw.clamp(min=fit["floor"]) / fit["norm"]).to(token_loss.dtype)

    def stats(self) -> dict[str, float]:
        """τ and the spread of the token weights (std, min, max, floored fraction) of the last fit."""
        return dict(self._stats)

    def report(self) -> dict[str, Any]:
        """Parameters, for ``forgetless.json``."""
        return {"tau": self.tau, "floor": self.floor, "normalize": self.normalize, "scope": self.scope,
                "tau_is_infinite": not isinstance(self.tau, str) and math.isinf(float(self.tau))}
