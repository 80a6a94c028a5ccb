"""The one explicit registry of regularizers, by name."""

from __future__ import annotations

from typing import Any

from forgetless.regularizers.base import Regularizer

REGULARIZERS: dict[str, type[Regularizer]] = {}


def build_regularizer(name: str, params: dict[str, Any] | None = None) -> Regularizer:
    """Instantiate the regularizer registered as ``name`` with its parameters.

    Raises:
        ValueError: the name is unknown (the message lists the known ones).
    """
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; expected one of {sorted(REGULARIZERS)}")
    return REGULARIZERS[name](**(params or {}))
