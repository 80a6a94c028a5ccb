"""The interface every coefficient rule implements: models in, coefficients out.

A rule is a configured instance (its parameters are dataclass fields); ``coefficients``
returns one c_k per model plus what it computed on the way (losses, weights), which the
CLI prints and the engine saves in ``forgetless-merge.json``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Coefficients:
    """c_k for each model, and the rule's working (JSON-able) for the record."""

    values: list[float]
    info: dict[str, Any] = field(default_factory=dict)


class MergeRule(ABC):
    """Turns a list of model directories into merge coefficients."""

    name: str = ""

    @abstractmethod
    def coefficients(self, models: list[Path]) -> Coefficients:
        """Coefficients for ``models`` (already resolved to safetensors directories).

        Raises:
            MergeError: the parameters make no sense for this rule or this many models.
        """

    def params(self) -> dict[str, Any]:
        """The rule's parameters, for the record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not callable(v)}
