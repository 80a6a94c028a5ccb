"""``nll``: plain supervised fine-tuning, every supervised token weighted 1."""

from __future__ import annotations

import torch

from forgetless.objectives.base import Objective


class NLL(Objective):
    """Plain negative log-likelihood: w_t = 1 (the baseline every method is compared to)."""

    name = "nll"

    def weights(self, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """All-ones weights ``[B, T]``."""
        return torch.ones_like(token_loss)
