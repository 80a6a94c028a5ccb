"""The one explicit registry of training objectives, by name."""

from __future__ import annotations

from typing import Any

from forgetless.objectives.base import Objective
from forgetless.objectives.dft import DFT
from forgetless.objectives.flow import FLOW, FLOWToken
from forgetless.objectives.nll import NLL
from forgetless.objectives.talr import TALR

OBJECTIVES: dict[str, type[Objective]] = {
    "nll": NLL,
    "dft": DFT,
    "talr": TALR,
    "flow": FLOW,
    "flow_token": FLOWToken,
}


def build_objective(name: str, params: dict[str, Any] | None = None) -> Objective:
    """Instantiate the objective registered as ``name`` with its parameters.

    Raises:
        ValueError: the name is unknown (the message lists the known ones), or a
            parameter is unknown or out of range (the message names it).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(OBJECTIVES)}")
    try:
        return OBJECTIVES[name](**(params or {}))
    except TypeError as err:  # an unknown keyword
        raise ValueError(f"method {name!r}: bad parameters {sorted(params or {})} ({err})") from None
