"""Paired differences between two seed groups of result rows, with their 95% bootstrap intervals.

Both sides are scored on the same items (test examples, validation examples,
held-out documents), so one set of resampling counts serves both and the
interval reflects which items were drawn (``forgetless.bootstrap``).
A difference is a *win* only when its interval lies above 0, a *loss* when it
lies below, and otherwise the two are *indistinguishable* at this sample size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from forgetless.bootstrap import bootstrap_difference
from forgetless.study.rows import Group

Metric = Literal["test", "validation", "general"]
_ITEMS = {"test": "domain_correct", "validation": "validation_correct"}


@dataclass(frozen=True)
class Difference:
    """``estimate`` of a - b with its 95% paired interval ``[low, high]``."""

    estimate: float
    low: float
    high: float

    @property
    def verdict(self) -> Literal["win", "loss", "indistinguishable"]:
        """Whether the interval excludes 0, and on which side."""
        if self.low > 0:
            return "win"
        if self.high < 0:
            return "loss"
        return "indistinguishable"

    def text(self, fmt: str) -> str:
        """``+1.5% [+0.5%, +2.5%]`` with ``fmt`` = ``"+.1%"``."""
        return f"{self.estimate:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def difference(a: Group, b: Group, metric: Metric, resamples: int = 1000, seed: int = 0) -> Difference:
    """The paired difference ``metric(a) - metric(b)``.

    Args:
        a, b: seed groups whose rows carry per-item scores (``Row["items"]``).
        metric: ``"test"`` or ``"validation"`` exact match (a mean over examples), or
            ``"general"``: held-out loss in nats/token (a ratio of sums over documents;
            a positive difference means ``a`` forgets more).
    """
    if metric == "general":
        after = (a.items("general_nats"), a.items("general_tokens"))
        before = (b.items("general_nats"), b.items("general_tokens"))
    else:
        after, before = (a.items(_ITEMS[metric]), None), (b.items(_ITEMS[metric]), None)
    interval = bootstrap_difference(after, before, resamples=resamples, seed=seed)
    return Difference(interval.estimate, interval.low, interval.high)


def over_floor(a: Group, floor_correct: list[int] | np.ndarray, resamples: int = 1000, seed: int = 0) -> Difference:
    """Test exact match of ``a`` minus that of always giving the most frequent test answer, paired per example.

    Args:
        floor_correct: ``[n]`` 1 where the test example's gold answer is the constant answer.
    """
    interval = bootstrap_difference((a.items("domain_correct"), None), (np.asarray(floor_correct, np.float64), None),
                                    resamples=resamples, seed=seed)
    return Difference(interval.estimate, interval.low, interval.high)
