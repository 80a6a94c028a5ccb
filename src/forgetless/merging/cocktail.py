"""LM-Cocktail (Xiao et al., arXiv 2311.13534): weights from loss on a few target examples.

Each candidate k (base, fine-tuned, peers from other domains) gets L_k, its mean loss
per token on about five examples of the target domain; the mix is
θ_mix = Σ_k softmax(−L/T)_k θ_k with temperature T (5 by default), and the result
α θ_ft + (1 − α) θ_mix keeps a share α of the fine-tuned model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from forgetless.merging.base import Coefficients, MergeRule
from forgetless.merging.checkpoint import MergeError
from forgetless.merging.interpolate import check_alpha


def cocktail_weights(losses: list[float], temperature: float) -> list[float]:
    """softmax(−L/T) over candidates: lower loss on the target examples, larger weight.

    Args:
        losses: L_k, mean loss per token of each candidate, shape [K].
        temperature: T > 0; large T flattens the weights toward uniform.
    """
    if not math.isfinite(temperature) or temperature <= 0:
        raise MergeError(f"temperature={temperature}: expected a positive number (LM-Cocktail uses 5)")
    return torch.softmax(-torch.tensor(losses, dtype=torch.float64) / temperature, dim=0).tolist()


def model_losses(models: list[Path], examples: Path, num_examples: int, trust_remote_code: bool = False) -> list[float]:
    """L_k: each model's mean loss per token on the first ``num_examples`` target examples,
    loading one model at a time."""
    from forgetless.merging.scoring import example_texts, load_model, mean_loss
    from forgetless.training.run import load_tokenizer

    texts = example_texts(examples, num_examples)
    tokenizer = load_tokenizer(str(models[0]), trust_remote_code)
    losses = []
    for path in models:
        model = load_model(path, trust_remote_code)
        losses.append(mean_loss(model, tokenizer, texts))
        del model
    return losses


@dataclass
class Cocktail(MergeRule):
    """Candidates are all models; ``finetuned`` is the index of the fine-tuned one among them."""

    examples: Path
    finetuned: int = 1
    temperature: float = 5.0
    alpha: float = 0.5
    num_examples: int = 5
    losses_fn: Callable[[list[Path]], list[float]] | None = field(default=None, repr=False)
    name = "cocktail"

    def coefficients(self, models: list[Path]) -> Coefficients:
        if len(models) < 2:
            raise MergeError(f"cocktail needs at least 2 candidate models, got {len(models)}")
        if not 0 <= self.finetuned < len(models):
            raise MergeError(f"finetuned={self.finetuned}: expected the index of a model, 0 to {len(models) - 1}")
        if self.num_examples < 1:
            raise MergeError(f"num_examples={self.num_examples}: expected at least 1")
        alpha = check_alpha(self.alpha)
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise MergeError(f"temperature={self.temperature}: expected a positive number (LM-Cocktail uses 5)")
        if self.losses_fn is not None:
            losses = self.losses_fn(models)
        else:
            losses = model_losses(models, Path(self.examples), self.num_examples)
        weights = cocktail_weights(losses, self.temperature)
        values = [(1 - alpha) * w for w in weights]
        values[self.finetuned] += alpha
        return Coefficients(values, {"losses": losses, "cocktail_weights": weights, "temperature": self.temperature,
                                     "alpha": alpha, "finetuned": self.finetuned})
