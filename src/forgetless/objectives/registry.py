"""The one explicit registry of training objectives, by name."""

from __future__ import annotations

from typing import Any

from forgetless.objectives.base import Objective
from forgetless.objectives.dft import DFT
from forgetless.objectives.flow import FLOW, FLOWToken
from forgetless.objectives.nll import NLL
from forgetless.objectives.talr import TALR
from forgetless.registry import build_registered

OBJECTIVES: dict[str, type[Objective]] = {
    "nll": NLL,
    "dft": DFT,
    "talr": TALR,
    "flow": FLOW,
    "flow_token": FLOWToken,
}


def build_objective(name: str, params: dict[str, Any] | None = None) -> Objective:
    """Instantiate the method registered as ``name`` with its parameters (see ``build_registered``)."""
    return build_registered(OBJECTIVES, "method", name, params)
