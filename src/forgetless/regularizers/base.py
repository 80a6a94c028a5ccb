"""The regularizer interface: a penalty added to the weighted NLL.

A regularizer (``l2sp``, ``kl``) returns a scalar that the trainer adds to the
training loss. The trainer calls ``penalty`` once per micro-batch and divides the
result by the number of gradient-accumulation steps, so an optimizer step sees
the penalty exactly once whatever the batch layout. Data-parallel ranks each add
the same (parameter) penalty and DDP averages gradients, so its gradient is
counted once over ranks too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from forgetless.params import NoParams, validate_params


class Regularizer(ABC):
    """A configured penalty on the model (or on its outputs); registered by name."""

    name: str = ""
    #: The regularizer's parameters: types, defaults and descriptions (listed by ``forgetless train --help``).
    params_model: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, **params: Any) -> None:
        """Validate ``params`` against ``params_model`` (the error names the regularizer and the parameter)."""
        self.params: Any = validate_params("regularizer", self.name, self.params_model, params)

    @property
    def reads_batch_logits(self) -> bool:
        """Whether ``penalty`` reads ``outputs.logits`` at every position of the batch.

        When no regularizer does, the trainer asks the model for logits only from the
        first supervised position on (``logits_to_keep``), skipping the shared prompt prefix.
        """
        return False

    def prepare(self, trainer: Any) -> None:
        """Hook run once before training (e.g. keep a frozen copy of θ*). Default: nothing."""

    @abstractmethod
    def penalty(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor:
        """The penalty for one optimizer step, as a scalar tensor with gradient.

        Args:
            model: the model being trained (possibly wrapped by PEFT / DDP).
            inputs: the collated micro-batch.
            outputs: the model's outputs on ``inputs`` (``outputs.logits`` is ``[B, T, V]``).
        """

    def stats(self) -> dict[str, float]:
        """Statistics of the last call, logged by the trainer (e.g. the L2 distance)."""
        return {}

    def report(self) -> dict[str, Any]:
        """Parameters and one-off statistics for ``forgetless.json``."""
        return {}
