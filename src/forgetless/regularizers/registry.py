"""The one explicit registry of regularizers, by name."""

from __future__ import annotations

from typing import Any

from forgetless.registry import build_registered
from forgetless.regularizers.base import Regularizer
from forgetless.regularizers.kl import KLRegularizer
from forgetless.regularizers.l2sp import L2SP

REGULARIZERS: dict[str, type[Regularizer]] = {
    "kl": KLRegularizer,
    "l2sp": L2SP,
}


def build_regularizer(name: str, params: dict[str, Any] | None = None) -> Regularizer:
    """Instantiate the regularizer registered as ``name`` with its parameters (see ``build_registered``)."""
    return build_registered(REGULARIZERS, "regularizer", name, params)
