"""Domain ability: exact-match accuracy of greedy answers on prompt/completion data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.data.errors import DataError
from forgetless.data.records import read_records
from forgetless.evaluation.exact_match import exact_match, extract_answer
from forgetless.evaluation.generate import greedy_completions


def gold_answer(fields: dict[str, Any], path: str | Path, where: str) -> str:
    """The gold answer of a record: its ``answer`` field, else what its completion states."""
    if isinstance(fields.get("answer"), str):
        return fields["answer"]
    stated = extract_answer(fields.get("completion", "")) if isinstance(fields.get("completion"), str) else None
    if stated is None:
        raise DataError(path, where, "answer", "expected a string answer, or a completion ending in 'Answer: ...'")
    return stated


def domain_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    limit: int | None = None,
) -> dict[str, Any]:
    """Exact-match accuracy of greedy completions of a prompt/completion file.

    Args:
        path: JSONL (or other supported file) with ``prompt`` and ``answer`` or ``completion``.
        max_new_tokens: generation budget; default: the longest gold completion plus 16 tokens.
        batch_size: prompts decoded together.
        limit: evaluate only the first ``limit`` records.

    Returns:
        ``{"exact_match": float, "n": int, "predictions": [...]}``.
    """
    records = read_records(path)[:limit]
    prompts, golds = [], []
    for record in records:
        prompt = record.fields.get("prompt")
        if not isinstance(prompt, str):
            raise DataError(path, record.where, "prompt", "expected a string")
        prompts.append(prompt)
        golds.append(gold_answer(record.fields, path, record.where))
    if max_new_tokens is None:
        longest = max(
            len(tokenizer(r.fields.get("completion") or f" Answer: {g}", add_special_tokens=False)["input_ids"])
            for r, g in zip(records, golds)
        )
        max_new_tokens = longest + 16
    generations = greedy_completions(model, tokenizer, prompts, max_new_tokens, batch_size)
    hits = [exact_match(g, gold) for g, gold in zip(generations, golds)]
    return {
        "exact_match": sum(hits) / len(hits),
        "n": len(hits),
        "predictions": [
            {"prompt": p, "generation": g, "answer": extract_answer(g), "gold": gold, "correct": h}
            for p, g, gold, h in zip(prompts, generations, golds, hits)
        ],
    }
