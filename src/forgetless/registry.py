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
            parameter is unknown or invalid (the class validates ``params`` against its
            ``params_model``; see ``forgetless.params.validate_params``).
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(registry)}")
    return registry[name](**(params or {}))
