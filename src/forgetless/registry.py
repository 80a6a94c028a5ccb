"""Build a registered class by name, with errors that name what was wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def build_registered(registry: Mapping[str, type[T]], kind: str, name: str, params: dict[str, Any] | None = None) -> T:
    """Instantiate ``registry[name](**params)``.

    Args:
        registry: name -> class.
        kind: what the registry holds, for messages ("method", "regularizer").

    Raises:
        ValueError: the name is unknown (the message lists the known ones), or a
            parameter is unknown or out of range (the message names it).
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(registry)}")
    try:
        return registry[name](**(params or {}))
    except TypeError as err:  # an unknown keyword
        raise ValueError(f"{kind} {name!r}: bad parameters {sorted(params or {})} ({err})") from None
