"""The one reader of texts and prompts (forgetless.data.texts): what each kind reads, and one error shape for all."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgetless.data.errors import DataError
from forgetless.data.texts import read_texts
from tests.conftest import write_jsonl


def test_each_kind_reads_its_field_in_file_order(tmp_path: Path) -> None:
    rows = [{"text": "a b", "prompt": "Q1", "completion": " A1"}, {"text": "c", "prompt": "Q2", "completion": " A2"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert read_texts(path) == ["a b", "c"]
    assert read_texts(path, "prompt") == ["Q1", "Q2"]
    assert read_texts(path, "example") == ["a b", "c"]  # a text wins over the pair
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "completion": " A"}, {"text": "t"}])
    assert read_texts(pairs, "example") == ["Q A", "t"]


@pytest.mark.parametrize("kind, rows, where", [
    ("text", [{"text": "ok"}, {"txt": "oops"}], "line 2, field 'text': expected a string (general text"),
    ("text", [{"text": 3}], "line 1, field 'text': expected a string (general text"),
    ("prompt", [{"prompt": "ok"}, {"text": "no"}], "line 2, field 'prompt': expected a string (prompt/completion"),
    ("example", [{"prompt": "Q"}], "line 1, field 'completion': expected a string (an example: a 'text' string, or"),
    ("example", [{"completion": "A"}], "line 1, field 'text': expected a string (an example"),
], ids=["text missing", "text not a string", "prompt missing", "pair without completion", "neither"])
def test_a_record_without_the_field_is_named_by_file_line_and_field(kind: str, rows: list[dict], where: str,
                                                                    tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as info:
        read_texts(path, kind)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{path}, {where}")


def test_every_record_is_checked_and_an_empty_file_is_refused(tmp_path: Path) -> None:
    # a bad record after the ones a caller keeps is still refused: one behaviour whatever the limit
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}] * 5 + [{"text": None}])
    with pytest.raises(DataError, match="line 6, field 'text'"):
        read_texts(path)
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="expected at least one record"):
        read_texts(empty)
