"""The one explicit registry of training objectives, by name."""

from __future__ import annotations

from typing import Any

from forgetless.objectives.base import Objective
from forgetless.objectives.nll import NLL

OBJECTIVES: dict[str, type[Objective]] = {
    "nll": NLL,
}


def build_objective(name: str, params: dict[str, Any] | None = None) -> Objective:
    """Instantiate the objective registered as ``name`` with its parameters.

    Raises:
        ValueError: the name is unknown (the message lists the known ones).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**(params or {}))
