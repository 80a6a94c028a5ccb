"""What a study's search stage searches: each tuned method's space and the study's budget of trials and steps.

A method is tuned when its ``learning_rates`` is ``auto`` (the learning rate over the
study's default range and the method family's key parameter, ``DEFAULT_PARAMS``) or
when it has a ``search:`` block::

    search:
      learning_rate: {low: 1.0e-4, high: 1.0e-2}        # log-uniform by default
      params:
        regularizers.l2sp.weight: {low: 1.0e-3, high: 1.0}
        lora_r: {choices: [4, 8, 16, 32]}

A parameter is a dotted path into the method's ``train`` keys. The budget
(``search:`` at the top of the study) is the same for every tuned method: the number
of trials, the reduction factor η of successive halving and the number of rungs
(``forgetless.study.tuning.halving``). This module holds only the configuration (pydantic,
no torch, no optuna), so ``forgetless.study.config`` can import it.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The key parameter each family searches besides the learning rate under `learning_rates: auto`
# (issue 26): TALR's weight floor, L2-SP's weight, LoRA's rank, replay's ratio. FLOW, DFT and
# plain SFT have no parameter the study tunes: their learning rate alone is searched.
DEFAULT_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "talr": {"method_params.floor": {"low": 1e-3, "high": 0.5}},
    "l2sp": {"regularizers.l2sp.weight": {"low": 1e-4, "high": 1.0}},
    "lora": {"lora_r": {"choices": [4, 8, 16, 32]}},
    "cf-replay": {"replay.ratio": {"low": 0.1, "high": 1.0, "log": False}},
    "contextual-replay": {"replay.ratio": {"low": 0.1, "high": 1.0, "log": False}},
    "corpus-replay": {"replay.ratio": {"low": 0.1, "high": 1.0, "log": False}},
}
EDGE = 0.1  # a chosen value in the outer tenth of a range (log or linear) lies at its edge


class Dimension(BaseModel):
    """One searched setting: a range ``{low, high, log, integer}`` or a list of ``choices``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    low: float | None = Field(None, description="Smallest value of the range.")
    high: float | None = Field(None, description="Largest value of the range.")
    log: bool = Field(True, description="Sample the range on a log scale (learning rates, weights).")
    integer: bool = Field(False, description="Integer values only (a rank).")
    choices: list[Any] | None = Field(None, min_length=1, description="A list of values instead of a range.")

    @model_validator(mode="after")
    def _range_or_choices(self) -> Dimension:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("expected {low: L, high: H} or {choices: [...]}")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low:g} high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g} (set log: false for a linear range)")
        return self

    def edge(self, value: Any) -> str | None:
        """``"low"`` or ``"high"`` when ``value`` lies at that edge of the searched range, else None.

        Choices: the smallest or largest of numeric choices; a range: the outer ``EDGE`` of it
        (on the log scale for a log range). A best value at the edge says the range may be too narrow.
        """
        if self.choices is not None:
            numbers = [c for c in self.choices if isinstance(c, int | float) and not isinstance(c, bool)]
            if len(numbers) < 2 or value not in numbers:
                return None
            return "low" if value == min(numbers) else "high" if value == max(numbers) else None
        assert self.low is not None and self.high is not None
        scale = math.log if self.log else float
        where = (scale(float(value)) - scale(self.low)) / (scale(self.high) - scale(self.low))
        return "low" if where <= EDGE else "high" if where >= 1 - EDGE else None

    def describe(self) -> str:
        """The range as the report states it: ``[1e-04, 0.01] log`` or ``{4, 8, 16}``."""
        if self.choices is not None:
            return "{" + ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in self.choices) + "}"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


class SearchSpace(BaseModel):
    """A tuned method's space: its learning rate and any of its ``train`` keys (dotted paths)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    learning_rate: Dimension | None = Field(None, description="Default: the study's search.learning_rate.")
    params: dict[str, Dimension] = Field(default_factory=dict,
                                         description="Dotted train keys (method_params.floor, lora_r) to search.")


class SearchConfig(BaseModel):
    """The search budget every tuned method gets: ``trials`` proposals, halved by ``reduction`` over ``rungs``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    trials: int = Field(8, ge=1, description="Settings proposed per tuned method (all train to the first rung).")
    reduction: int = Field(2, ge=2, description="Successive halving's η: the best 1/η of a rung go on to the next.")
    rungs: int = Field(3, ge=1, description="Rungs: the last ends at training.max_steps, each earlier one at 1/η of "
                                            "the next (3 rungs, η 2, 300 steps: 75, 150, 300).")
    seed: int = Field(0, ge=0, description="Seed of the sampler that proposes the settings (the same every run).")
    learning_rate: Dimension = Field(default_factory=lambda: Dimension(low=1e-4, high=1e-2),
                                     description="The learning-rate range of `learning_rates: auto` methods.")


def set_path(train: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``train`` with the dotted key ``path`` set to ``value`` (nested dicts made as needed)."""
    out = dict(train)
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
        return out
    inner = out.get(head)
    if inner is True or inner is None:  # e.g. `replay: true`-like flags: a mapping replaces them
        inner = {}
    if not isinstance(inner, dict):
        raise ValueError(f"search param {path!r}: train key {head!r} is {inner!r}, not a mapping")
    out[head] = set_path(inner, rest, value)
    return out
