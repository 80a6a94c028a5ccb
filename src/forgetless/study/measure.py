"""What a study measures on every model: per-item scores, so gains and forgetting get paired intervals.

General ability is the code length of each held-out document; domain ability is
the exact-match correctness of each test example. Keeping per-item values (not
only means) lets the report put a paired bootstrap interval on the difference
from the base: the same documents and examples, resampled together.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from forgetless.data.collate import PadCollator
from forgetless.evaluation.codelength import text_windows
from forgetless.evaluation.domain import domain_accuracy
from forgetless.training.trainer import token_nll


@torch.no_grad()
def document_nats(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str], window: int = 256, batch_size: int = 16
) -> tuple[list[float], list[int]]:
    """Summed NLL (nats) and scored tokens of each text, batched over length-sorted windows.

    Returns:
        ``(nats, tokens)``, two lists aligned with ``texts``.
    """
    model.eval()
    windows = []
    for index, text in enumerate(texts):
        for w in text_windows(tokenizer, [text], window):
            windows.append((index, w))
    windows.sort(key=lambda item: len(item[1]["input_ids"]))
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    nats = [0.0] * len(texts)
    tokens = [0] * len(texts)
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([w for _, w in chunk]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, mask = token_nll(logits, batch["labels"])
        for row, (index, _) in enumerate(chunk):
            nats[index] += float(loss[row].sum())
            tokens[index] += int(mask[row].sum())
    return nats, tokens


def measure(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    general_texts: list[str],
    domain_test: str,
    domain_limit: int | None = None,
) -> dict[str, Any]:
    """Per-item general code length and domain correctness of one model.

    Returns:
        ``{"general_nats": [...], "general_tokens": [...], "general_bytes": int,
        "domain_correct": [0/1, ...], "examples": [first three predictions]}``.
    """
    nats, tokens = document_nats(model, tokenizer, general_texts)
    accuracy = domain_accuracy(model, tokenizer, domain_test, limit=domain_limit)
    return {
        "general_nats": nats,
        "general_tokens": tokens,
        "general_bytes": sum(len(t.encode("utf-8")) for t in general_texts),
        "domain_correct": [int(p["correct"]) for p in accuracy["predictions"]],
        "examples": accuracy["predictions"][:3],
    }


def nats_per_token(m: dict[str, Any]) -> float:
    """Mean held-out loss per token of a measurement."""
    return sum(m["general_nats"]) / sum(m["general_tokens"])


def accuracy(m: dict[str, Any]) -> float:
    """Domain exact-match accuracy of a measurement."""
    return sum(m["domain_correct"]) / len(m["domain_correct"])


def paired_interval(
    after: dict[str, Any], before: dict[str, Any], metric: str, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(after) - metric(before)``, resampling items in pairs.

    Args:
        metric: ``"forgetting"`` (nats/token on general documents; a ratio of sums
            per resample) or ``"gain"`` (exact-match accuracy on domain examples).
    """
    rng = random.Random(seed)
    deltas = []
    if metric == "forgetting":
        a_n, b_n, toks = after["general_nats"], before["general_nats"], before["general_tokens"]
        n = len(toks)
        for _ in range(resamples):
            idx = [rng.randrange(n) for _ in range(n)]
            total = sum(toks[i] for i in idx)
            deltas.append((sum(a_n[i] for i in idx) - sum(b_n[i] for i in idx)) / total)
    else:
        a, b = after["domain_correct"], before["domain_correct"]
        n = len(a)
        for _ in range(resamples):
            idx = [rng.randrange(n) for _ in range(n)]
            deltas.append(sum(a[i] - b[i] for i in idx) / n)
    deltas.sort()
    lo = deltas[math.floor((1 - level) / 2 * (resamples - 1))]
    hi = deltas[math.ceil((1 + level) / 2 * (resamples - 1))]
    return lo, hi
