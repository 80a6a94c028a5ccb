"""The one explicit registry of regularizers, by name."""

from __future__ import annotations

from typing import Any

from forgetless.regularizers.base import Regularizer
from forgetless.regularizers.kl import KLRegularizer
from forgetless.regularizers.l2sp import L2SP

REGULARIZERS: dict[str, type[Regularizer]] = {
    "kl": KLRegularizer,
    "l2sp": L2SP,
}


def build_regularizer(name: str, params: dict[str, Any] | None = None) -> Regularizer:
    """Instantiate the regularizer registered as ``name`` with its parameters.

    Raises:
        ValueError: the name is unknown (the message lists the known ones), or a
            parameter is unknown or out of range (the message names it).
    """
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; expected one of {sorted(REGULARIZERS)}")
    try:
        return REGULARIZERS[name](**(params or {}))
    except TypeError as err:  # an unknown keyword
        raise ValueError(f"regularizer {name!r}: bad parameters {sorted(params or {})} ({err})") from None
