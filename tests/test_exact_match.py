"""Answer extraction and exact match: the documented formats, and near misses rejected."""

from __future__ import annotations

import pytest

from forgetless.evaluation.exact_match import exact_match, extract_answer


@pytest.mark.parametrize(
    ("generation", "answer"),
    [
        (" Answer: 12", "12"),
        (" E + V = 3 + 4 = 7.\nAnswer: 12", "12"),
        ("Answer: 3\nAnswer: 12.", "12"),  # the last one counts, one trailing period dropped
        ("Answer:   10  12 15 \nmore text", "10 12 15"),
        ("no marker here", None),
        ("Answer:  ", None),
    ],
)
def test_extract_answer(generation: str, answer: str | None) -> None:
    assert extract_answer(generation) == answer


@pytest.mark.parametrize("near_miss", [" Answer: 120", " Answer: 12.0", " Answer: 1 2", " 12", " Answer: twelve"])
def test_near_misses_do_not_match(near_miss: str) -> None:
    assert not exact_match(near_miss, "12")


def test_match() -> None:
    assert exact_match(" E + V = 5.\nAnswer: 12.", "12")
    assert exact_match("Answer: 10  12", "10 12")
