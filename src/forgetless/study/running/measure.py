"""What a study measures on every model, as the JSON dict its cells keep: ``evaluation.measure`` plus validation.

The measurement and its intervals are ``forgetless.evaluation.measure`` (what
``forgetless eval`` uses too); this module only adds the validation set the study
chooses models on and keeps the per-item lists in the dict format of the cached
``eval`` cells, so cells written before stay readable.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from forgetless.evaluation.measure import (
    Measurement,
    TokenSample,
    Units,
    domain_correctness,
    measure_model,
    paired_difference,
)

# paired_interval's metric -> the evaluation metric it is (report.METRICS).
_METRICS = {"forgetting": "nats_per_token", "gain": "exact_match", "kl": "cf_nll"}


def measure(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    general_texts: list[str],
    domain_test: str,
    domain_limit: int | None = None,
    kl_samples: list[TokenSample] | None = None,
    validation: str | None = None,
    validation_limit: int | None = None,
    lm_eval: dict[str, Any] | None = None,
    answer_extraction: str | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Per-item general code length, domain correctness and context-free sample NLL of one model.

    Args:
        validation: the domain validation set; its exact match (first ``validation_limit``
            examples) is what the study chooses models on, so the test set only reports.
        kl_samples: held-out context-free samples of the base (``forgetless.replay``);
            their per-sequence NLL under this model, minus the base's, estimates KL(p_base || p_model).
        lm_eval: ``task_items``'s settings (tasks, include_path, limit, num_fewshot, batch_size): lm-eval
            tasks scored per document (``forgetless.evaluation.lmeval_items``).
        answer_extraction: how answers are read on the test and validation sets (default: each file's
            declared extractor, else answer_marker; ``forgetless.evaluation.answer_extraction``).
        seconds: filled with the wall time of each part (``general``, ``domain``: the test set, ``kl``,
            ``validation``, ``lm_eval``), for the study's timings (``timing.json`` of an evaluation cell).

    Returns:
        ``{"general_nats": [...], "general_tokens": [...], "general_bytes": int,
        "domain_correct": [0/1, ...], "answer_extraction": str, "validation_correct": [0/1, ...] (when a validation set is given),
        "kl_nll": [...] (when samples are given),
        "lm_eval": {task: {"metric", "higher_is_better", "scores": [...]}} (when tasks are given),
        "examples": [first three predictions]}``.
    """
    # 16 windows per code-length pass, 32 prompts per decoding batch: the batch sizes the study has always
    # used, so a fresh run reproduces the numbers of cells measured before.
    seconds = {} if seconds is None else seconds
    m = measure_model(model, tokenizer, general_texts, domain_test, domain_limit, kl_samples, batch_size=32,
                      general_batch_size=16, answer_extraction=answer_extraction, seconds=seconds)
    result: dict[str, Any] = {
        "general_nats": m.general_nats,
        "general_tokens": m.general_tokens,
        "general_bytes": sum(m.general_bytes or []),
        "domain_correct": m.domain_correct,
        "answer_extraction": m.answer_extraction,
        "examples": (m.predictions or [])[:3],
    }
    if validation is not None:
        start = time.perf_counter()
        result["validation_correct"], _ = domain_correctness(model, tokenizer, validation, validation_limit,
                                                          answer_extraction=answer_extraction)
        seconds["validation"] = time.perf_counter() - start
    if m.kl_nll is not None:
        result["kl_nll"] = m.kl_nll
    if lm_eval:
        from forgetless.evaluation.lmeval_items import task_items  # imported here: the lm-eval extra is optional

        start = time.perf_counter()
        items = task_items(model, tokenizer, **lm_eval)
        seconds["lm_eval"] = time.perf_counter() - start
        result["lm_eval"] = {task: {"metric": t.metric, "higher_is_better": t.higher_is_better, "scores": t.scores}
                             for task, t in items.items()}
    return result


def task_forgetting(after: dict[str, Any], before: dict[str, Any], task: str, resamples: int = 1000,
                    seed: int = 0) -> tuple[float, float, tuple[float, float]]:
    """``(score, forgetting, forgetting's 95% paired interval)`` of one lm-eval task: forgetting is the base's
    score minus the model's for a higher-is-better metric (the other way round otherwise), so positive
    means worse, like the held-out loss's forgetting."""
    a, b = after["lm_eval"][task], before["lm_eval"][task]
    if len(a["scores"]) != len(b["scores"]):
        raise ValueError(f"lm-eval task {task}: {len(a['scores'])} documents against the base's {len(b['scores'])}")
    sign = -1.0 if a["higher_is_better"] else 1.0
    interval = paired_difference((a["scores"], None), (b["scores"], None), resamples=resamples, seed=seed)
    bounds = sorted((sign * interval.low, sign * interval.high))
    score = sum(a["scores"]) / len(a["scores"])
    return score, sign * interval.estimate, (bounds[0], bounds[1])


def _units(m: dict[str, Any]) -> dict[str, Units]:
    """The evaluation units of a cell's measurement dict (it keeps bytes only as a total and no token counts
    of the samples, so neither bits per byte nor the KL per token is among them)."""
    return Measurement(general_nats=m["general_nats"], general_tokens=m["general_tokens"],
                       domain_correct=m["domain_correct"], kl_nll=m.get("kl_nll") or None).units()


def nats_per_token(m: dict[str, Any]) -> float:
    """Mean held-out loss per token of a measurement."""
    return sum(m["general_nats"]) / sum(m["general_tokens"])


def accuracy(m: dict[str, Any]) -> float:
    """Domain exact-match accuracy of a measurement."""
    return sum(m["domain_correct"]) / len(m["domain_correct"])


def paired_interval(
    after: dict[str, Any], before: dict[str, Any], metric: str, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% paired bootstrap interval of ``metric(after) - metric(before)`` (``evaluation.measure.paired_difference``).

    Args:
        metric: ``"forgetting"`` (nats/token over general documents, a ratio of sums
            per resample), ``"gain"`` (exact-match accuracy over domain examples) or
            ``"kl"`` (mean NLL difference over the base's context-free samples: the
            KL(p_base || p_model) estimate per sequence).
    """
    if metric not in _METRICS:
        raise ValueError(f"paired_interval: metric {metric!r}; expected one of {sorted(_METRICS)}")
    name = _METRICS[metric]
    interval = paired_difference(_units(after)[name], _units(before)[name], resamples=resamples, seed=seed)
    return interval.low, interval.high
