"""One measurement of a model, shared by ``forgetless eval`` and the study: per-item scores and their intervals.

A ``Measurement`` keeps one value per evaluation unit, never only means, so every
figure gets a bootstrap interval and every difference from the base a *paired* one:

- general ability: the code length of each held-out text, ``BOS + text + EOS`` scored
  in windows (nats, scored tokens, UTF-8 bytes; ``codelength.text_code_lengths``);
- domain ability: whether the greedy answer to each test example is an exact match
  (0/1; ``domain.domain_accuracy``);
- KL to the base: the NLL of each context-free sample of the base given its prompt,
  and its token count (``scoring.score_pairs``); the mean of model minus base is the
  Monte Carlo estimate of KL(p_base ‖ p_model) of arXiv 2505.13811
  (``forgetless.replay.kl_estimate``).

Every metric is a ratio of sums over units (``Measurement.units``): nats per token
is ``Σ nats / Σ tokens`` over texts, exact match ``Σ correct / n`` over examples,
the KL ``Σ (nll_model − nll_base) / n`` over samples.

Intervals are computed one way, here, for both callers: the percentile bootstrap over
units (``evaluation.bootstrap``), and for a difference from the base the *paired*
bootstrap, one set of resampling counts applied to both models (Efron and Tibshirani,
*An Introduction to the Bootstrap*, 1993, ch. 13, percentile intervals). Why this one:

- the two models are scored on the same units, so their scores are strongly
  correlated (a hard text is hard for both); resampling units jointly keeps that
  correlation, so the interval reflects the difference's own spread, not the much
  larger spread of either model's score;
- ratio metrics (nats per token, KL per token) are recomputed on every resample, so
  no delta-method linearization of the ratio is needed;
- it needs no normal shape: per-sample NLL differences are skewed (a tuned model can
  make a few of the base's samples very unlikely), which a symmetric
  ``mean ± 1.96 s/√n`` interval ignores and the percentile interval follows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Interval,
    bootstrap_difference,
    bootstrap_ratio,
)
from forgetless.evaluation.codelength import text_code_lengths
from forgetless.evaluation.domain import domain_accuracy
from forgetless.evaluation.scoring import score_pairs

# (numerator [n], denominator [n] or None): the metric is sum(numerator) / sum(denominator), a mean when None.
Units = tuple[list[float], list[float] | None]


class TokenSample(Protocol):
    """A context-free sample of the base (``forgetless.replay.generate.Sample``): its prompt and generated ids."""

    @property
    def prompt_ids(self) -> list[int]: ...

    @property
    def token_ids(self) -> list[int]: ...


@dataclass(frozen=True)
class Measurement:
    """Per-item scores of one model; a field is None when that part was not measured.

    Attributes:
        general_nats: ``[texts]`` summed NLL (nats) of each held-out text.
        general_tokens: ``[texts]`` tokens scored in each text (EOS included, BOS not).
        general_bytes: ``[texts]`` UTF-8 bytes of each text.
        domain_correct: ``[examples]`` 1 where the greedy answer is an exact match, else 0.
        predictions: ``[examples]`` ``{"prompt", "generation", "answer", "gold", "correct"}``.
        answer_extraction: the extractor that scored ``domain_correct`` (``evaluation.answer_extraction``).
        kl_nll: ``[samples]`` NLL (nats) of each context-free sample of the base given its prompt.
        kl_tokens: ``[samples]`` sampled tokens scored in each.
    """

    general_nats: list[float] | None = None
    general_tokens: list[int] | None = None
    general_bytes: list[int] | None = None
    domain_correct: list[int] | None = None
    predictions: list[dict[str, Any]] | None = None
    answer_extraction: str | None = None
    kl_nll: list[float] | None = None
    kl_tokens: list[int] | None = None

    def units(self) -> dict[str, Units]:
        """``{metric: (numerator, denominator)}`` of every metric measured (names as in ``report.METRICS``).

        ``cf_nll`` is the mean NLL of the base's samples; the difference of two
        models' ``cf_nll`` is the KL estimate, per sequence (``cf_nll_per_token``: per token).
        """
        units: dict[str, Units] = {}
        if self.general_nats is not None and self.general_tokens is not None:
            units["nats_per_token"] = (list(self.general_nats), [float(t) for t in self.general_tokens])
        if self.general_nats is not None and self.general_bytes is not None:
            units["bits_per_byte"] = ([n / math.log(2) for n in self.general_nats], [float(b) for b in self.general_bytes])
        if self.domain_correct is not None:
            units["exact_match"] = ([float(c) for c in self.domain_correct], None)
        if self.kl_nll is not None:
            units["cf_nll"] = (list(self.kl_nll), None)
        if self.kl_nll is not None and self.kl_tokens is not None:
            units["cf_nll_per_token"] = (list(self.kl_nll), [float(t) for t in self.kl_tokens])
        return units


def general_losses(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], window: int = 256, batch_size: int = 16,
    progress: bool = False,
) -> tuple[list[float], list[int], list[int]]:
    """``(nats [texts], tokens [texts], bytes [texts])``: the code length of each held-out text.

    Args:
        window: maximum tokens per forward pass (``codelength.text_windows``).
        batch_size: windows per forward pass.
    """
    parts = text_code_lengths(model, tokenizer, texts, window, batch_size, progress)
    return [p.nats for p in parts], [p.tokens for p in parts], [p.bytes for p in parts]


def domain_correctness(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, path: str | Path, limit: int | None = None,
    max_new_tokens: int | None = None, batch_size: int = 32, progress: bool = False,
    answer_extraction: str | None = None,
) -> tuple[list[int], list[dict[str, Any]]]:
    """``(correct [examples] as 0/1, predictions [examples])`` of the first ``limit`` examples of ``path``.

    Args:
        max_new_tokens: generation budget; default: the longest gold completion plus 16 tokens.
        batch_size: prompts decoded together.
        answer_extraction: the extractor; default: the file's declared one, else answer_marker.
    """
    scored = domain_accuracy(model, tokenizer, path, max_new_tokens, batch_size, limit, progress, answer_extraction)
    predictions = scored["predictions"]
    return [int(p["correct"]) for p in predictions], predictions


def sample_nll(
    model: nn.Module, samples: Sequence[TokenSample], batch_size: int = 32, progress: bool = False
) -> tuple[list[float], list[int]]:
    """``(nll [samples], tokens [samples])``: ``-Σ_t log p(token_t | prompt, tokens_<t)`` of each sample.

    Args:
        samples: each with non-empty ``prompt_ids`` (e.g. ``[BOS]``) and ``token_ids`` (the scored part).
        batch_size: requests per forward pass.
    """
    scores = score_pairs(model, [(s.prompt_ids, s.token_ids) for s in samples], batch_size,
                         desc="context-free NLL", progress=progress)
    return [-s.logprob for s in scores], [s.tokens for s in scores]


def measure_model(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    general_texts: list[str] | None = None,
    domain: str | Path | None = None,
    domain_limit: int | None = None,
    kl_samples: Sequence[TokenSample] | None = None,
    window: int = 256,
    batch_size: int = 32,
    general_batch_size: int | None = None,
    max_new_tokens: int | None = None,
    progress: bool = False,
    answer_extraction: str | None = None,
    seconds: dict[str, float] | None = None,
) -> Measurement:
    """Measure one model: per-text general losses, per-example domain correctness, per-sample NLL of the base's samples.

    Args:
        model: anything with ``forward(input_ids [B, T], attention_mask [B, T]).logits [B, T, V]``.
        tokenizer: its tokenizer (BOS, EOS; PAD or EOS for padding).
        general_texts: held-out general texts (None: no general measurement).
        domain: prompt/completion test file (None: no domain measurement).
        domain_limit: score only its first ``domain_limit`` examples.
        kl_samples: context-free samples of the base at temperature 1 (None or empty: no KL).
        window: tokens per code-length window.
        batch_size: prompts decoded together, and samples scored together.
        general_batch_size: windows per code-length forward pass (default ``batch_size``).
        max_new_tokens: domain generation budget (default: longest gold completion + 16).
        progress: show progress bars.
        answer_extraction: how domain answers are extracted (``evaluation.answer_extraction``); default: the
            test file's declared extractor, else answer_marker.
        seconds: filled with the wall time of each part measured (``general``, ``domain``, ``kl``).
    """
    seconds = {} if seconds is None else seconds
    general: dict[str, Any] = {}
    if general_texts is not None:
        start = time.perf_counter()
        nats, tokens, sizes = general_losses(model, tokenizer, general_texts, window,
                                             general_batch_size or batch_size, progress)
        general = {"general_nats": nats, "general_tokens": tokens, "general_bytes": sizes}
        seconds["general"] = time.perf_counter() - start
    scored: dict[str, Any] = {}
    if domain is not None:
        start = time.perf_counter()
        found = domain_accuracy(model, tokenizer, domain, max_new_tokens, batch_size, domain_limit, progress,
                                answer_extraction)
        scored = {"domain_correct": [int(p["correct"]) for p in found["predictions"]],
                  "predictions": found["predictions"], "answer_extraction": found["answer_extraction"]}
        seconds["domain"] = time.perf_counter() - start
    nll, counts = None, None
    if kl_samples:
        start = time.perf_counter()
        nll, counts = sample_nll(model, kl_samples, batch_size, progress)
        seconds["kl"] = time.perf_counter() - start
    return Measurement(**general, **scored, kl_nll=nll, kl_tokens=counts)


def interval(
    units: Units, confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """A metric (``sum(numerator) / sum(denominator)``) with its percentile bootstrap interval over units."""
    return bootstrap_ratio(*units, confidence=confidence, resamples=resamples, seed=seed)


def paired_difference(
    after: Units, before: Units, confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """``metric(after) - metric(before)`` on the same units, with its paired percentile bootstrap interval.

    Args:
        after: the units of the evaluated model.
        before: the units of the base, on the same units in the same order.
    """
    return bootstrap_difference(after, before, confidence, resamples, seed)


__all__ = ["Measurement", "TokenSample", "Units", "domain_correctness", "general_losses", "interval",
           "measure_model", "paired_difference", "sample_nll"]
