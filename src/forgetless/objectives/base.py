"""The objective interface: per-token losses in, per-token weights out.

Every training objective in forgetless is a weighting of the per-token negative
log-likelihood. An objective only says how to weight; the trainer reduces in one
place, as L = sum_t w_t * l_t / N with N the number of supervised tokens in the
*global* batch (all gradient-accumulation micro-batches and all data-parallel
ranks), so no objective can get the normalization wrong under accumulation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from forgetless.params import NoParams, validate_params


class Objective(ABC):
    """Turns per-token losses into per-token loss weights.

    Subclasses are configured instances (``params`` from the config, validated against
    their ``params_model``); they are registered by name in ``forgetless.objectives.registry``.
    """

    name: str = ""
    #: The method's parameters: types, defaults and descriptions (listed by ``forgetless train --help``).
    params_model: ClassVar[type[BaseModel]] = NoParams
    #: ``None``: weights need no batch statistic. ``"global"``: ``fit`` must see the
    #: whole global batch (all micro-batches, all ranks) before ``weights``.
    #: ``"micro_batch"``: ``fit`` sees each micro-batch on its own.
    statistic_scope: str | None = None

    def __init__(self, **params: Any) -> None:
        """Validate ``params`` against ``params_model`` (the error names the method and the parameter)."""
        self.params: Any = validate_params("method", self.name, self.params_model, params)

    def prepare(self, trainer: Any) -> None:
        """Hook run once before training (e.g. a pre-pass over the data). Default: nothing."""

    def fit(self, losses: torch.Tensor, sample_losses: torch.Tensor) -> None:
        """Fit batch statistics (TALR's τ); called by the trainer when ``statistic_scope`` is set.

        Args:
            losses: ``[M]`` supervised token losses of the batch the scope names.
            sample_losses: ``[S]`` mean supervised token loss of each sample in it.
        """

    @abstractmethod
    def weights(self, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token weights, computed without gradient.

        Args:
            token_loss: ``[B, T]`` per-token NLL (0 where ``mask`` is False).
            mask: ``[B, T]`` bool, True on supervised tokens.
            batch: the collated batch (for sample-level metadata).

        Returns:
            ``[B, T]`` weights; only values where ``mask`` is True matter.
        """

    def stats(self) -> dict[str, float]:
        """Statistics of the last call, logged by the trainer (e.g. a temperature)."""
        return {}

    def report(self) -> dict[str, Any]:
        """Parameters and one-off statistics (e.g. a weight histogram) for ``forgetless.json``."""
        return {}
