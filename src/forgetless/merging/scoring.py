"""What the data-driven rules (cocktail, greedy soup) and the α sweep measure on a model:
mean loss per token on a few examples, via the evaluation package's code length."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.errors import DataError
from forgetless.data.records import read_records
from forgetless.evaluation.codelength import code_length
from forgetless.models import load_causal_lm


def example_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts of the first ``limit`` records: ``text``, or ``prompt`` + ``completion``."""
    texts = []
    for record in read_records(path)[:limit]:
        fields = record.fields
        if isinstance(fields.get("text"), str):
            texts.append(fields["text"])
        elif isinstance(fields.get("prompt"), str) and isinstance(fields.get("completion"), str):
            texts.append(fields["prompt"] + fields["completion"])
        else:
            raise DataError(path, record.where, "text", "expected a string 'text', or string 'prompt' and 'completion'")
    if not texts:
        raise DataError(path, None, None, "expected at least one example")
    return texts


def load_for_scoring(path: str | Path, trust_remote_code: bool = False) -> PreTrainedModel:
    """A causal LM in float32 and eval mode, without its tokenizer (losses and sweeps compare in one
    precision; the rules score every model with the first model's tokenizer, as lm-cocktail does)."""
    model = load_causal_lm(path, torch.float32, trust_remote_code)
    return model.eval()


def mean_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> float:
    """Mean negative log-likelihood per token (nats) of ``texts`` under ``model``."""
    return code_length(model, tokenizer, texts).nats_per_token
