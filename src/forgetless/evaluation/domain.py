"""Domain ability: exact-match accuracy of greedy answers, and completion loss.

Exact match: the model's greedy completion of each prompt (EOS-terminated, see
``generate.py``) is reduced to its answer by the data set's extractor
(``answer_extraction``: by default ``answer_marker``, the text after the last
``Answer:``, to the end of that line, whitespace-normalized, one trailing period
dropped) and compared with the gold answer (the record's ``answer`` field, else the
answer its ``completion`` states) as that extractor compares.

Completion loss: the mean NLL in nats per token of the gold ``completion`` + EOS
given BOS + ``prompt``, exactly the tokens and masking of completion-only training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from forgetless.data.errors import DataError
from forgetless.data.formats import encode_completion
from forgetless.data.records import Record, read_records
from forgetless.evaluation.answer_extraction import resolve
from forgetless.evaluation.exact_match import extract_answer
from forgetless.evaluation.generate import greedy_completions
from forgetless.evaluation.scoring import score_pairs


def gold_answer(fields: dict[str, Any], path: str | Path, where: str) -> str:
    """The gold answer of a record: its ``answer`` field, else what its completion states."""
    if isinstance(fields.get("answer"), str):
        return fields["answer"]
    stated = extract_answer(fields.get("completion", "")) if isinstance(fields.get("completion"), str) else None
    if stated is None:
        raise DataError(path, where, "answer", "expected a string answer, or a completion ending in 'Answer: ...'")
    return stated


def domain_accuracy(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    progress: bool = True,
    answer_extraction: str | None = None,
) -> dict[str, Any]:
    """Exact-match accuracy of greedy completions of a prompt/completion file.

    Args:
        path: JSONL (or other supported file) with ``prompt`` and ``answer`` or ``completion``.
        max_new_tokens: generation budget; default: the longest gold completion plus 16 tokens.
        batch_size: prompts decoded together.
        limit: evaluate only the first ``limit`` records.
        answer_extraction: the extractor (``forgetless.evaluation.answer_extraction``); default: the
            one the file's records declare, else ``answer_marker``.

    Returns:
        ``{"exact_match": float, "n": int, "answer_extraction": str, "predictions": [...]}``.
    """
    records = read_records(path)[:limit]
    extraction = resolve(answer_extraction, (r.fields for r in records), str(path))
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
    generations = greedy_completions(model, tokenizer, prompts, max_new_tokens, batch_size, progress=progress)
    hits = [extraction.matches(g, gold) for g, gold in zip(generations, golds)]
    return {
        "exact_match": sum(hits) / len(hits),
        "n": len(hits),
        "answer_extraction": extraction.spec,
        "predictions": [
            {"prompt": p, "generation": g, "answer": extraction.answer(g), "gold": gold, "correct": h}
            for p, g, gold, h in zip(prompts, generations, golds, hits)
        ],
    }


def completion_loss(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    batch_size: int = 32,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean NLL (nats per token) of each record's gold completion given its prompt.

    Args:
        path: prompt/completion JSONL; every record needs ``prompt`` and ``completion`` strings.
        limit: score only the first ``limit`` records (the same ones ``domain_accuracy`` uses).

    Returns:
        ``{"completion_loss": float, "tokens": int, "nats": [per record], "token_counts": [per record]}``.
    """
    records: list[Record] = read_records(path)[:limit]
    pairs = []
    for record in records:
        prompt, completion = record.fields.get("prompt"), record.fields.get("completion")
        if not isinstance(prompt, str):
            raise DataError(path, record.where, "prompt", "expected a string")
        if not isinstance(completion, str) or not completion:
            raise DataError(path, record.where, "completion", "expected a non-empty string (completion loss scores it)")
        pairs.append(encode_completion(tokenizer, prompt, completion))
    scores = score_pairs(model, pairs, batch_size, desc="completion loss", progress=progress)
    nats = [-s.logprob for s in scores]
    counts = [s.tokens for s in scores]
    return {"completion_loss": sum(nats) / sum(counts), "tokens": sum(counts), "nats": nats, "token_counts": counts}
