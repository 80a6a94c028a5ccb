"""WiSE-FT interpolation: θ_α = (1 − α) θ* + α θ_ft (Wortsman et al., arXiv 2109.01903;
for LMs and over-adaptation, arXiv 2506.01901)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from forgetless.merging.base import Coefficients, MergeRule, RuleParams
from forgetless.merging.errors import MergeError


def check_alpha(alpha: float, what: str = "alpha") -> float:
    """α must be a number in [0, 1]: 0 is the base, 1 the fine-tuned model."""
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or not 0 <= alpha <= 1:
        raise MergeError(f"{what}={alpha}: expected a number in [0, 1] (0 = base model, 1 = fine-tuned model)")
    return float(alpha)


class InterpolateParams(RuleParams):
    """``--rule interpolate``: α is required (``--sweep`` / ``--budget`` choose it instead, without this rule)."""

    # No range here: ``check_alpha`` says what α means when it is out of [0, 1].
    alpha: float = Field(description="Weight of the fine-tuned model (0 = base, 1 = fine-tuned); or --sweep / "
                                     "--budget to choose one.")


@dataclass
class Interpolate(MergeRule):
    """Two models, base first: coefficients (1 − α, α)."""

    alpha: float
    name = "interpolate"
    params_model = InterpolateParams

    def coefficients(self, models: list[Path]) -> Coefficients:
        if len(models) != 2:
            raise MergeError(f"interpolate takes exactly 2 models (base, fine-tuned), got {len(models)}")
        alpha = check_alpha(self.alpha)
        return Coefficients([1.0 - alpha, alpha])
