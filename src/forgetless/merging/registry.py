"""The one list of coefficient rules, by name."""

from __future__ import annotations

from forgetless.merging.average import Average
from forgetless.merging.base import MergeRule
from forgetless.merging.cocktail import Cocktail
from forgetless.merging.greedy_soup import GreedySoup
from forgetless.merging.interpolate import Interpolate
from forgetless.merging.task_arithmetic import TaskArithmetic

RULES: dict[str, type[MergeRule]] = {
    "interpolate": Interpolate,
    "average": Average,
    "greedy_soup": GreedySoup,
    "task_arithmetic": TaskArithmetic,
    "cocktail": Cocktail,
}
