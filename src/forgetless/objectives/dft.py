"""``dft``: Dynamic Fine-Tuning, every token weighted by its own probability.

Wu et al., "On the Generalization of SFT: A Reinforcement Learning Perspective with
Reward Rectification" (arXiv 2508.05629), shipped as ``loss_type="dft"`` by TRL and
LLaMA-Factory: the token-reweighting baseline users already know.
"""

from __future__ import annotations

import torch

from forgetless.objectives.base import Objective


class DFT(Objective):
    """w_t = p_θ(y_t) = exp(−ℓ_t), stop-gradient.

    Reduced like every objective, ``Σ_t w_t ℓ_t / N`` over the global batch, which is
    TRL's ``dft_loss``. There is no batch statistic, so the weight of a token does not
    depend on the batch layout. Analytic check: uniform logits over two tokens give
    ``ℓ = log 2`` and ``w = 1/2``, so DFT = CE / 2.
    """

    name = "dft"

    def weights(self, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, T]`` token probabilities ``exp(−token_loss)``."""
        weights = torch.exp(-token_loss)
        supervised = weights[mask]
        if supervised.numel():
            self._stats = {"weight_mean": float(supervised.mean()), "weight_std": float(supervised.std(unbiased=False))}
        return weights

    def stats(self) -> dict[str, float]:
        """Mean and spread of the last micro-batch's token weights."""
        return dict(getattr(self, "_stats", {}))
