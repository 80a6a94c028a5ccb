"""Task arithmetic: θ = θ* + Σ_k λ_k (θ_k − θ*) (Ilharco et al., arXiv 2212.04089).

As coefficients over (θ*, θ_1, ..., θ_K): (1 − Σλ, λ_1, ..., λ_K), an affine combination.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from forgetless.merging.base import Coefficients, MergeRule, RuleParams
from forgetless.merging.errors import MergeError


class TaskArithmeticParams(RuleParams):
    """``--rule task_arithmetic``: the λ are required (there is no neutral default)."""

    # Their count is checked against the models in ``coefficients``.
    lambdas: list[float] = Field(min_length=1, description="One scale for every task vector, or one each.")


@dataclass
class TaskArithmetic(MergeRule):
    """Base first, then task models; one λ for all of them or one λ each."""

    lambdas: list[float]
    name = "task_arithmetic"
    params_model = TaskArithmeticParams

    def coefficients(self, models: list[Path]) -> Coefficients:
        if len(models) < 2:
            raise MergeError(f"task_arithmetic needs a base and at least 1 task model, got {len(models)} models")
        lambdas = list(self.lambdas)
        if len(lambdas) == 1:
            lambdas = lambdas * (len(models) - 1)
        if len(lambdas) != len(models) - 1:
            raise MergeError(f"{len(self.lambdas)} lambdas for {len(models) - 1} task models; give one, or one per task model")
        for lam in lambdas:
            if not math.isfinite(lam):
                raise MergeError(f"lambda {lam} is not a finite number")
        if all(lam == 0 for lam in lambdas):
            raise MergeError("all lambdas are 0; the result would be the base model unchanged")
        return Coefficients([1.0 - sum(lambdas), *lambdas])
