"""α sweeps of the WiSE-FT interpolation in memory, without writing checkpoints.

One model's float parameters are overwritten with θ_α = θ* + α(θ_ft − θ*) for each α
(``torch.lerp``, which is exact at α = 0 and α = 1), and each point is evaluated there.
θ* and θ_ft may be stored in different float dtypes (a bf16 base, an fp32 fine-tuned
model): both are held in float32 (float64 for a float64 model), combined there and
written into the model in its own dtype. Memory: the model plus float32 copies of θ* and θ_ft. Nothing is written unless the
caller asks for a point afterwards (``merge_checkpoints`` with ``Interpolate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.errors import MergeError
from forgetless.merging.checks import check_compatible
from forgetless.merging.interpolate import check_alpha

Evaluate = Callable[[PreTrainedModel], dict[str, Any]]


class Interpolator:
    """Holds θ* and θ_ft and writes θ_α into ``model`` on request.

    Args:
        model: a model with the architecture of both checkpoints (its float parameters are overwritten).
        base: θ*'s safetensors directory.
        finetuned: θ_ft's safetensors directory.
    """

    def __init__(self, model: PreTrainedModel, base: str | Path, finetuned: str | Path) -> None:
        self.model = model
        self.params = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
        base_ckpt, ft_ckpt = Checkpoint(base), Checkpoint(finetuned)

        check_compatible([base_ckpt, ft_ckpt])
        # named_parameters lists a tied lm_head once, under the embedding's name, as saved.
        missing = [n for n in self.params if n not in base_ckpt.tensors]
        if missing:
            raise MergeError(f"parameter {missing[0]} of the model is not in {base}")
        names = list(self.params)
        wide = {n: torch.float64 if self.params[n].dtype == torch.float64 else torch.float32 for n in names}
        self.base = {n: base_ckpt.read(n).to(wide[n]) for n in names}
        self.finetuned = {n: ft_ckpt.read(n).to(wide[n]) for n in names}

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        """Write θ_α = θ* + α(θ_ft − θ*) into the model's parameters (rounded once, to their dtype)."""
        alpha = check_alpha(alpha)
        for name, base in self.base.items():
            self.params[name].copy_(torch.lerp(base, self.finetuned[name], alpha))


def alpha_sweep(model: PreTrainedModel, base: str | Path, finetuned: str | Path, alphas: Sequence[float],
                evaluate: Evaluate, on_point: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate the interpolation at every α, in memory.

    Args:
        model: any model of the right architecture (e.g. the fine-tuned one, loaded in float32).
        base: θ* directory; finetuned: θ_ft directory.
        alphas: points to evaluate (each in [0, 1]).
        evaluate: maps the model at θ_α to a dict of metrics.
        on_point: called with each finished point (for printing as the sweep goes).

    Returns:
        One ``{"alpha": α, **metrics, "seconds": s}`` per α, in the order given.
    """
    if not alphas:
        raise MergeError("no alphas to sweep")
    for alpha in alphas:
        check_alpha(alpha)
    interpolator = Interpolator(model, base, finetuned)
    curve = []
    for alpha in alphas:
        start = time.time()
        interpolator.set_alpha(alpha)
        point = {"alpha": float(alpha), **evaluate(model), "seconds": time.time() - start}
        curve.append(point)
        if on_point:
            on_point(point)
    return curve
