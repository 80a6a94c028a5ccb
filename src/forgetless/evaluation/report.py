"""Evaluate a model (and optionally its base): general ability, domain ability,
forgetting and gain with bootstrap confidence intervals, as a JSON-able dict.

The library entry point takes a ``(model, tokenizer)`` pair, so anything with
``forward(input_ids, attention_mask).logits`` evaluates: a loaded checkpoint, a PEFT
model, an in-memory interpolation, an output ensemble. ``evaluate_model`` loads
from a path first. The JSON schema is in ``docs/eval_schema.md``.

Metrics (``METRICS``) and their evaluation units (what the bootstrap resamples):

==================  ========  ================  ===================================
metric              group     better            unit, value
==================  ========  ================  ===================================
nats_per_token      general   lower             text: sum nats / sum tokens
bits_per_byte       general   lower             text: sum nats / ln 2 / sum bytes
mc_accuracy         general   higher            item: picked the labelled choice
mc_accuracy_norm    general   higher            item: same, log-likelihood per char
cf_nll              general   lower             sample: NLL of a base model's context-free sample
cf_nll_per_token    general   lower             sample: sum nats / sum sampled tokens
exact_match         domain    higher            record: extracted answer == gold
completion_loss     domain    lower             record: sum nats / sum tokens
==================  ========  ================  ===================================

Forgetting = general metric (model) − general metric (base); gain = domain metric
(model) − domain metric (base); signs are raw differences, so for a "lower is better"
metric a positive forgetting is a loss of ability. With ``kl_samples`` (context-free
samples drawn from the base at temperature 1 by ``forgetless generate``), forgetting of
``cf_nll`` is mean NLL_model − mean NLL_base on them: the Monte Carlo estimate of
KL(p_base ‖ p_model) of arXiv 2505.13811 (``forgetless.replay.kl_estimate``), here with
the same paired bootstrap interval as every other metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from forgetless.data.records import read_records
from forgetless.data.texts import read_texts
from forgetless.evaluation.cloze import build_cloze, multiple_choice_accuracy, read_choice_items
from forgetless.evaluation.domain import completion_loss
from forgetless.evaluation.measure import Units, interval, measure_model, paired_difference
from forgetless.models import load_model
from forgetless.replay.kl_estimate import load_samples

SCHEMA_VERSION = 1
# metric -> (group, higher_is_better)
METRICS: dict[str, tuple[str, bool]] = {
    "nats_per_token": ("general", False),
    "bits_per_byte": ("general", False),
    "mc_accuracy": ("general", True),
    "mc_accuracy_norm": ("general", True),
    "cf_nll": ("general", False),
    "cf_nll_per_token": ("general", False),
    "exact_match": ("domain", True),
    "completion_loss": ("domain", False),
}


@dataclass
class ModelEval:
    """One model's measurements: the JSON summary and the per-unit values behind it.

    ``units[metric] = (numerator [n], denominator [n] or None)``: the metric is
    ``sum(numerator) / sum(denominator)`` (a mean when None), which is what the
    bootstrap resamples.
    """

    summary: dict[str, Any]
    units: dict[str, Units] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSettings:
    """What to evaluate and how; every field is written to the report."""

    general: str | None = None
    general_limit: int | None = None
    choices: str | None = None
    cloze: bool = True
    cloze_items: int = 200
    kl_samples: str | None = None
    kl_limit: int | None = None
    domain: str | None = None
    limit: int | None = None
    answer_extraction: str | None = None
    window: int = 256
    batch_size: int = 32
    max_new_tokens: int | None = None
    resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0
    progress: bool = True


def _with_ci(block: dict[str, Any], name: str, units: Units, s: EvalSettings) -> None:
    found = interval(units, s.confidence, s.resamples, s.seed)
    block[name] = found.estimate
    block[f"{name}_ci"] = [found.low, found.high]


def evaluate(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, settings: EvalSettings, name: str = "model"
) -> ModelEval:
    """Measure one in-memory model.

    Code length, exact match and the context-free NLL come from ``measure.measure_model``
    (the study measures with it too); the cloze task and completion loss are added here.

    Args:
        model: anything with ``forward(input_ids, attention_mask).logits [B, T, V]``.
        tokenizer: its tokenizer (BOS, EOS; PAD or EOS for padding).
        settings: files and options.
        name: how the model is named in the report.
    """
    s = settings
    result = ModelEval(summary={"model": name})
    texts = read_texts(s.general)[: s.general_limit] if s.general else None
    samples = None
    if s.kl_samples:
        samples = load_samples(s.kl_samples, s.kl_limit)
        empty = [i for i, sample in enumerate(samples) if not sample.token_ids or not sample.prompt_ids]
        if empty:
            raise ValueError(f"{s.kl_samples}: sample {empty[0]} has no prompt or no generated tokens")
    measured = measure_model(model, tokenizer, texts, s.domain, s.limit, samples, s.window, s.batch_size,
                             max_new_tokens=s.max_new_tokens, progress=s.progress,
                             answer_extraction=s.answer_extraction)
    result.units.update(measured.units())
    if texts is not None:
        general: dict[str, Any] = {"file": str(s.general), "texts": len(texts),
                                   "tokens": sum(measured.general_tokens or []),
                                   "bytes": sum(measured.general_bytes or [])}
        for metric in ("nats_per_token", "bits_per_byte"):
            _with_ci(general, metric, result.units[metric], s)
        result.summary["general"] = general
    if s.choices or (s.general and s.cloze):
        if s.choices:
            items, source = read_choice_items(s.choices), str(s.choices)
        else:
            # Built from all held-out texts (not general_limit), so the items do not depend on it.
            items = build_cloze(read_texts(s.general), n_items=s.cloze_items, seed=s.seed)  # type: ignore[arg-type]
            source = f"cloze built from {s.general} (build_cloze, {s.cloze_items} items, seed {s.seed})"
        mc = multiple_choice_accuracy(model, tokenizer, items, s.batch_size, s.progress)
        block = result.summary.setdefault("general", {})
        block.update({"mc_source": source, "mc_n": mc["n"]})
        result.units["mc_accuracy"] = ([float(c) for c in mc["correct"]], None)
        result.units["mc_accuracy_norm"] = ([float(c) for c in mc["correct_norm"]], None)
        for metric in ("mc_accuracy", "mc_accuracy_norm"):
            _with_ci(block, metric, result.units[metric], s)
    if samples is not None:
        block = result.summary.setdefault("general", {})
        block.update({"cf_file": str(s.kl_samples), "cf_n": len(samples), "cf_tokens": sum(measured.kl_tokens or [])})
        for metric in ("cf_nll", "cf_nll_per_token"):
            _with_ci(block, metric, result.units[metric], s)
    if s.domain:
        domain: dict[str, Any] = {"file": str(s.domain), "n": len(measured.domain_correct or []),
                                  "answer_extraction": measured.answer_extraction}
        _with_ci(domain, "exact_match", result.units["exact_match"], s)
        has_completions = all(isinstance(r.fields.get("completion"), str) and r.fields["completion"]
                              for r in read_records(s.domain)[: s.limit])
        if has_completions:
            loss = completion_loss(model, tokenizer, s.domain, s.batch_size, s.limit, s.progress)
            result.units["completion_loss"] = (loss["nats"], [float(t) for t in loss["token_counts"]])
            _with_ci(domain, "completion_loss", result.units["completion_loss"], s)
            domain["completion_tokens"] = loss["tokens"]
        domain["examples"] = (measured.predictions or [])[:3]
        result.summary["domain"] = domain
    return result


def forgetting_and_gain(after: ModelEval, before: ModelEval, settings: EvalSettings) -> dict[str, Any]:
    """Paired bootstrap differences ``after - before`` of every metric both models have.

    Returns:
        ``{"forgetting": {metric: {...}}, "gain": {metric: {...}}}`` where each entry is
        ``{"delta": float, "ci": [low, high], "higher_is_better": bool}``.
    """
    out: dict[str, Any] = {"forgetting": {}, "gain": {}}
    for metric, (group, higher_is_better) in METRICS.items():
        if metric not in after.units or metric not in before.units:
            continue
        difference = paired_difference(after.units[metric], before.units[metric], settings.confidence,
                                       settings.resamples, settings.seed)
        key = "forgetting" if group == "general" else "gain"
        out[key][metric] = {"delta": difference.estimate, "ci": [difference.low, difference.high],
                            "higher_is_better": higher_is_better}
    return out


def evaluation_report(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    settings: EvalSettings,
    base: tuple[nn.Module, PreTrainedTokenizerBase] | None = None,
    name: str = "model",
    base_name: str = "base",
) -> dict[str, Any]:
    """The full report of ``model`` (and of ``base``, with forgetting and gain) as a dict.

    Both models are evaluated on exactly the same texts, items and records, which is
    what makes the paired bootstrap valid.
    """
    start = time.time()
    after = evaluate(model, tokenizer, settings, name)
    report: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **after.summary}
    if base is not None:
        before = evaluate(base[0], base[1], settings, base_name)
        report["base"] = before.summary
        report.update(forgetting_and_gain(after, before, settings))
    report["bootstrap"] = {"resamples": settings.resamples, "confidence": settings.confidence, "seed": settings.seed,
                           "method": "percentile; paired over the same units for differences"}
    report["settings"] = {k: v for k, v in vars(settings).items() if k != "progress"}
    report["seconds"] = time.time() - start
    return report


def evaluate_model(
    model_spec: str,
    general: str | Path | None = None,
    domain: str | Path | None = None,
    limit: int | None = None,
    trust_remote_code: bool = False,
    base: str | None = None,
    add_bos: str = "auto",
    chat_template: str = "auto",
    **options: Any,
) -> dict[str, Any]:
    """Load ``model_spec`` (and ``base``) and return ``evaluation_report``.

    Args:
        model_spec: checkpoint dir, LoRA adapter dir or hub id (``testbed:`` specs resolved by the caller).
        general: held-out general text (JSONL with ``text``); also the source of the cloze task.
        domain: prompt/completion test set.
        limit: evaluate only the first ``limit`` domain records.
        trust_remote_code: allow custom modeling code (off by default).
        base: the model to measure forgetting and gain against.
        add_bos: the BOS convention of both (``forgetless.special_tokens``; ``auto``: each model's own).
        chat_template: chat-rendered domain prompts for both (``forgetless.prompting``; ``auto``: as trained).
        **options: other ``EvalSettings`` fields (``general_limit``, ``choices``, ``batch_size``,
            ``answer_extraction``, ...).
    """
    settings = EvalSettings(general=None if general is None else str(general),
                            domain=None if domain is None else str(domain), limit=limit, **options)
    model, tokenizer, path = load_model(model_spec, trust_remote_code, add_bos=add_bos,
                                       chat_template=chat_template)
    base_pair, base_path = None, None
    if base is not None:
        base_model, base_tokenizer, base_path = load_model(base, trust_remote_code, add_bos=add_bos,
                                                              chat_template=chat_template)
        if base_tokenizer.get_vocab() != tokenizer.get_vocab():
            # Paired per-token comparisons need one tokenization; bits per byte alone would not.
            raise ValueError(f"{model_spec} and {base}: tokenizers differ; expected the base the model was tuned from")
        base_pair = (base_model, base_tokenizer)
    return evaluation_report(model, tokenizer, settings, base_pair, name=path, base_name=base_path or "base")


__all__ = ["METRICS", "EvalSettings", "ModelEval", "evaluate", "evaluate_model", "evaluation_report",
           "forgetting_and_gain"]
