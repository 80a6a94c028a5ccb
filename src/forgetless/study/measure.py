"""What a study measures on every model: per-item scores, so gains and forgetting get paired intervals.

General ability is the code length of each held-out document; domain ability is
the exact-match correctness of each test example. Keeping per-item values (not
only means) lets the report put a paired bootstrap interval on the difference
from the base: the same documents and examples, resampled together.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from forgetless.evaluation.bootstrap import bootstrap_difference
from forgetless.evaluation.codelength import text_code_lengths
from forgetless.evaluation.domain import domain_accuracy
from forgetless.replay.kl_estimate import sequence_nll


def measure(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    general_texts: list[str],
    domain_test: str,
    domain_limit: int | None = None,
    kl_samples: list[Any] | None = None,
    validation: str | None = None,
    validation_limit: int | None = None,
) -> dict[str, Any]:
    """Per-item general code length, domain correctness and context-free sample NLL of one model.

    Args:
        validation: the domain validation set; its exact match (first ``validation_limit``
            examples) is what the study chooses models on, so the test set only reports.
        kl_samples: held-out context-free samples of the base (``forgetless.replay``);
            their per-sequence NLL under this model, minus the base's, estimates KL(p_base || p_model).

    Returns:
        ``{"general_nats": [...], "general_tokens": [...], "general_bytes": int,
        "domain_correct": [0/1, ...], "validation_correct": [0/1, ...] (when a validation set is given),
        "kl_nll": [...] (when samples are given),
        "examples": [first three predictions]}``.
    """
    lengths = text_code_lengths(model, tokenizer, general_texts, progress=False)
    accuracy = domain_accuracy(model, tokenizer, domain_test, limit=domain_limit, progress=False)
    result = {
        "general_nats": [c.nats for c in lengths],
        "general_tokens": [c.tokens for c in lengths],
        "general_bytes": sum(c.bytes for c in lengths),
        "domain_correct": [int(p["correct"]) for p in accuracy["predictions"]],
        "examples": accuracy["predictions"][:3],
    }
    if validation is not None:
        scored = domain_accuracy(model, tokenizer, validation, limit=validation_limit, progress=False)
        result["validation_correct"] = [int(p["correct"]) for p in scored["predictions"]]
    if kl_samples:
        result["kl_nll"] = sequence_nll(model, kl_samples).tolist()
    return result


def nats_per_token(m: dict[str, Any]) -> float:
    """Mean held-out loss per token of a measurement."""
    return sum(m["general_nats"]) / sum(m["general_tokens"])


def accuracy(m: dict[str, Any]) -> float:
    """Domain exact-match accuracy of a measurement."""
    return sum(m["domain_correct"]) / len(m["domain_correct"])


def paired_interval(
    after: dict[str, Any], before: dict[str, Any], metric: str, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% paired bootstrap interval of ``metric(after) - metric(before)`` (``forgetless.evaluation.bootstrap``).

    Args:
        metric: ``"forgetting"`` (nats/token over general documents, a ratio of sums
            per resample) or ``"gain"`` (exact-match accuracy over domain examples).
    """
    if metric == "forgetting":
        interval = bootstrap_difference((after["general_nats"], after["general_tokens"]),
                                        (before["general_nats"], before["general_tokens"]), resamples=resamples,
                                        seed=seed)
    else:
        interval = bootstrap_difference((after["domain_correct"], None), (before["domain_correct"], None),
                                        resamples=resamples, seed=seed)
    return interval.low, interval.high
