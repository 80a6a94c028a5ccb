"""Checks on a user's domain data before a study spends hours on it, and the validation split it chooses on.

- A test or validation set must state an answer for every example (an ``answer``
  field, or a completion ending ``Answer: X``): exact match cannot score anything
  else, so the study refuses it up front, naming the file and line.
- Validation or test prompts that appear verbatim in the training data inflate the
  scores of every trained model (it has seen the answer); the study warns and
  counts them.
- Without ``data.validation`` the study carves a validation split from the
  training data (a seeded sample, removed from what the models train on), so its
  choices never look at the test set.
"""

from __future__ import annotations

import random
from pathlib import Path

from forgetless.atomic import write_jsonl
from forgetless.config import ConfigError
from forgetless.data.errors import DataError
from forgetless.data.records import Record, read_records
from forgetless.evaluation import answer_extraction
from forgetless.evaluation.domain import gold_answer


def check_answers(path: str | Path) -> list[str]:
    """The gold answer of every record of a domain evaluation set.

    Raises:
        DataError: a record has no string ``prompt`` or no extractable answer (names file and line).
    """
    answers = []
    for record in read_records(path):
        if not isinstance(record.fields.get("prompt"), str):
            raise DataError(path, record.where, "prompt", "expected a string (exact match scores the greedy "
                                                          "completion of each prompt)")
        answers.append(gold_answer(record.fields, path, record.where))
    return answers


def constant_floor(path: str | Path, limit: int | None = None, extraction: str | None = None) -> dict[str, object]:
    """The constant-answer floor of a test set, compared as its extractor compares answers.

    Always giving the best single answer (``answer_extraction.constant_floor``): its answer,
    accuracy, per-example correctness (0/1) and the extractor (``extraction``, else the file's
    declared one, else answer_marker), over the first ``limit`` examples.
    """
    records = read_records(path)[:limit]
    rule = answer_extraction.resolve(extraction, (r.fields for r in records), str(path))
    return {**answer_extraction.constant_floor(check_answers(path)[:limit], rule), "floor_extraction": rule.spec}


def _prompts(records: list[Record]) -> set[str]:
    return {r.fields["prompt"] for r in records if isinstance(r.fields.get("prompt"), str)}


def duplicate_prompts(train: str | Path, other: str | Path) -> int:
    """How many records of ``other`` have a prompt that appears verbatim in ``train``."""
    seen = _prompts(read_records(train))
    return sum(isinstance(r.fields.get("prompt"), str) and r.fields["prompt"] in seen for r in read_records(other))


def carve_validation(train: str | Path, size: int, out_dir: Path, seed: int = 0) -> tuple[str, str]:
    """Split ``size`` examples (at most a fifth of the data) off ``train`` as a validation set.

    The split is a seeded sample, so a rerun carves the same examples and the
    training cells stay cached. Both files are written atomically as JSONL.

    Returns:
        ``(train path, validation path)`` of the two parts.

    Raises:
        ConfigError: the training data has no prompt/answer records to carve from.
    """
    records = read_records(train)
    try:
        check_answers(train)
    except DataError as err:
        raise ConfigError(f"data.validation: not given, and no validation split can be carved from {train} "
                          f"({err}); give a validation set with prompt and answer") from None
    take = min(size, len(records) // 5)
    if take < 1:
        raise ConfigError(f"data.validation: not given, and {train} has only {len(records)} examples, too few to "
                          "carve a validation split from; give a validation set")
    held = set(random.Random(seed).sample(range(len(records)), take))
    out_dir.mkdir(parents=True, exist_ok=True)
    train_out, validation_out = out_dir / "train.jsonl", out_dir / "validation.jsonl"
    write_jsonl(train_out, [r.fields for i, r in enumerate(records) if i not in held])
    write_jsonl(validation_out, [r.fields for i, r in enumerate(records) if i in held])
    return str(train_out), str(validation_out)
