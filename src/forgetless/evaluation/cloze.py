"""Zero-shot multiple choice by log-likelihood, and the testbed's cloze task.

A multiple-choice item is ``{"context": str, "choices": [str, ...], "label": int}``;
the model picks the choice ``c`` with the highest ``log p(" " + c | context)``
(``accuracy``), or the highest log-likelihood per character of the choice
(``accuracy_norm``, computed as lm-eval's ``acc_norm``: characters of the choice, without the space). Choices are joined to the context with
one space, lm-eval's default ``target_delimiter``.

The testbed's general multiple-choice task is a cloze built deterministically from
held-out general text (``build_cloze``): the context is ``context_words`` words of a
held-out document, the true choice the next ``continuation_words`` words, and the
distractors spans of the same length taken from *other* held-out documents. It is
built at evaluation time from ``general/heldout.jsonl`` (a second or less), so
existing testbed caches stay valid; ``write_cloze`` writes it to a file for lm-eval.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless.atomic import write_jsonl
from forgetless.data.errors import DataError
from forgetless.data.records import read_records
from forgetless.evaluation.scoring import encode_pair, score_pairs


def build_cloze(
    texts: list[str],
    n_items: int = 200,
    context_words: int = 32,
    continuation_words: int = 6,
    n_choices: int = 4,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Cloze items from held-out texts, the same for the same arguments on any machine.

    Args:
        texts: held-out documents (whitespace-separated words).
        n_items: items to build (fewer when the texts are too short).
        context_words: words of context before the gap.
        continuation_words: words in each choice.
        n_choices: choices per item (one true, the rest distractors).
        seed: seed of the ``random.Random`` that picks positions and distractors.

    Returns:
        Items ``{"context", "choices", "label", "doc"}``; ``doc`` is the index of the source text.
    """
    span = context_words + continuation_words
    words = [t.split() for t in texts]
    candidates = [(d, i) for d, w in enumerate(words) for i in range(context_words, len(w) - continuation_words + 1, span)]
    docs = {d for d, _ in candidates}
    if len(docs) < 2:
        raise ValueError(f"build_cloze: need held-out texts of at least {span} words from two documents or more")
    rng = random.Random(seed)
    picked = sorted(rng.sample(candidates, min(n_items, len(candidates))))
    items = []
    for d, i in picked:
        true = " ".join(words[d][i : i + continuation_words])
        choices = [true]
        for _ in range(100 * n_choices):
            if len(choices) == n_choices:
                break
            other, j = candidates[rng.randrange(len(candidates))]
            distractor = " ".join(words[other][j : j + continuation_words])
            if other != d and distractor not in choices:
                choices.append(distractor)
        if len(choices) < n_choices:
            raise ValueError(f"build_cloze: could not find {n_choices - 1} distinct distractors; use fewer choices")
        rng.shuffle(choices)
        items.append({"context": " ".join(words[d][i - context_words : i]), "choices": choices,
                      "label": choices.index(true), "doc": d})
    return items


def read_choice_items(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a multiple-choice JSONL file (``context``, ``choices``, ``label``)."""
    items = []
    for record in read_records(path):
        f = record.fields
        if not isinstance(f.get("context"), str):
            raise DataError(path, record.where, "context", "expected a string")
        choices = f.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise DataError(path, record.where, "choices", "expected a list of two or more non-empty strings")
        label = f.get("label")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
            raise DataError(path, record.where, "label", f"expected an integer index in [0, {len(choices)})")
        items.append({"context": f["context"], "choices": choices, "label": label})
    return items


def choice_requests(tokenizer: PreTrainedTokenizerBase, items: list[dict[str, Any]]) -> list[tuple[list[int], list[int]]]:
    """One scoring request per (item, choice), items in order, choices in order."""
    return [encode_pair(tokenizer, item["context"], " " + choice) for item in items for choice in item["choices"]]


def multiple_choice_accuracy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    items: list[dict[str, Any]],
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of picking each item's labelled choice by log-likelihood.

    Returns:
        ``{"accuracy", "accuracy_norm", "n", "correct": [0/1 per item], "correct_norm": [...]}``.
    """
    scores = score_pairs(model, choice_requests(tokenizer, items), batch_size, desc="multiple choice", progress=progress)
    correct, correct_norm, k = [], [], 0
    for item in items:
        item_scores = scores[k : k + len(item["choices"])]
        k += len(item["choices"])
        raw = [s.logprob for s in item_scores]
        norm = [s.logprob / len(c) for s, c in zip(item_scores, item["choices"])]
        correct.append(int(raw.index(max(raw)) == item["label"]))
        correct_norm.append(int(norm.index(max(norm)) == item["label"]))
    n = len(items)
    return {"accuracy": sum(correct) / n, "accuracy_norm": sum(correct_norm) / n, "n": n,
            "correct": correct, "correct_norm": correct_norm}


def write_cloze(items: list[dict[str, Any]], path: str | Path) -> Path:
    """Write cloze items as JSONL (atomically), e.g. for lm-eval's offline task YAML."""

    write_jsonl(path, items)
    return Path(path)
