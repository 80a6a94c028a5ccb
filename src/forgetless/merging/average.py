"""Uniform (or weighted) average of models: the uniform model soup (arXiv 2203.05482)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from forgetless.merging.base import Coefficients, MergeRule, RuleParams
from forgetless.merging.errors import MergeError


def normalized_weights(weights: list[float] | None, n_models: int) -> list[float]:
    """Non-negative weights, one per model, scaled to sum to 1 (uniform when None)."""
    if weights is None:
        return [1.0 / n_models] * n_models
    if len(weights) != n_models:
        raise MergeError(f"{len(weights)} weights for {n_models} models; give one per model")
    for w in weights:
        if not math.isfinite(w) or w < 0:
            raise MergeError(f"weight {w}: weights of an average must be finite and non-negative")
    total = sum(weights)
    if total <= 0:
        raise MergeError("weights sum to 0; at least one model needs a positive weight")
    return [w / total for w in weights]


class AverageParams(RuleParams):
    """``--rule average``: optional weights."""

    # Checked by ``normalized_weights``, which knows how many models there are.
    weights: list[float] | None = Field(None, description="Non-negative weight per model (normalized); uniform "
                                                          "when omitted.")


@dataclass
class Average(MergeRule):
    """θ = Σ_k w_k θ_k with w ≥ 0 normalized to sum 1; uniform without weights."""

    weights: list[float] | None = None
    name = "average"
    params_model = AverageParams

    def coefficients(self, models: list[Path]) -> Coefficients:
        if len(models) < 2:
            raise MergeError(f"average needs at least 2 models, got {len(models)}")
        return Coefficients(normalized_weights(self.weights, len(models)))
