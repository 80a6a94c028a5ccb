"""Texts and prompts read from a data file: general text to score, prompts to complete, examples to score.

One reader for every such use (evaluation's general text and cloze items, contextual replay's
prompts, the merge rules' scoring examples, the α sweep, the study's cells), with one error
behaviour: the records come from ``read_records`` (any format or ``hf:`` spec, a mapping
applied, an empty source refused there), every record is checked, and one that lacks the
field as a string is refused naming the file, the line or record, the field, and what the
file should hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from forgetless.data.errors import DataError
from forgetless.data.records import read_records

TextKind = Literal["text", "prompt", "example"]

# What each kind reads, and what a record must hold (the end of the error message).
_EXPECTED: dict[str, str] = {
    "text": "expected a string (general text: a 'text' string per record)",
    "prompt": "expected a string (prompt/completion data: a 'prompt' string per record)",
    "example": "expected a string (an example: a 'text' string, or 'prompt' and 'completion' strings)",
}


def read_texts(path: str | Path, kind: TextKind = "text") -> list[str]:
    """The texts of every record of a data file, in file order.

    Args:
        path: a data file or spec (``forgetless.data.spec``).
        kind: ``text``: each record's ``text`` (general-text files); ``prompt``: each record's
            ``prompt`` (a prompt/completion file, whose prompts are completed); ``example``: a
            whole example, its ``text`` or its ``prompt`` + ``completion`` (what a merge rule
            scores a model on).

    Raises:
        DataError: ``general.jsonl, line 3, field 'text': expected a string (general text: ...)``.
    """
    texts = []
    for record in read_records(path):
        fields = record.fields
        if kind == "example" and not isinstance(fields.get("text"), str) and "prompt" in fields:
            for name in ("prompt", "completion"):
                if not isinstance(fields.get(name), str):
                    raise DataError(path, record.where, name, _EXPECTED[kind])
            texts.append(fields["prompt"] + fields["completion"])
            continue
        name = "prompt" if kind == "prompt" else "text"
        if not isinstance(fields.get(name), str):
            raise DataError(path, record.where, name, _EXPECTED[kind])
        texts.append(fields[name])
    return texts
