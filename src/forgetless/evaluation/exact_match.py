"""Answer extraction and exact match.

The documented format: the answer is the text after the **last** ``Answer:`` in
the generation, up to the end of that line, with surrounding whitespace and one
trailing period removed, and inner runs of whitespace collapsed. A generation
without ``Answer:`` has no answer and never matches. Comparison is exact string
equality after that normalization: ``12`` does not match ``12.0`` or ``120``.
"""

from __future__ import annotations

import re

_MARKER = "Answer:"


def extract_answer(generation: str) -> str | None:
    """The normalized answer in ``generation``, or None if it states none."""
    index = generation.rfind(_MARKER)
    if index < 0:
        return None
    answer = generation[index + len(_MARKER) :].split("\n", 1)[0].strip()
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    answer = re.sub(r"\s+", " ", answer)
    return answer or None


def exact_match(generation: str, gold: str) -> bool:
    """True when the extracted answer equals the normalized gold answer."""
    answer = extract_answer(generation)
    return answer is not None and answer == re.sub(r"\s+", " ", gold.strip())
