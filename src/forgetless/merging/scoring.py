"""What the data-driven rules (cocktail, greedy soup) and the α sweep measure on a model:
mean loss per token on a few examples, via the evaluation package's code length."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.evaluation.codelength import code_length
from forgetless.models import load_causal_lm


def load_for_scoring(path: str | Path, trust_remote_code: bool = False) -> PreTrainedModel:
    """A causal LM in float32 and eval mode, without its tokenizer (losses and sweeps compare in one
    precision; the rules score every model with the first model's tokenizer, as lm-cocktail does)."""
    model = load_causal_lm(path, torch.float32, trust_remote_code)
    return model.eval()


def mean_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> float:
    """Mean negative log-likelihood per token (nats) of ``texts`` under ``model``."""
    return code_length(model, tokenizer, texts).nats_per_token
