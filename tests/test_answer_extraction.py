"""Named answer extractors: hand-written cases for each, one-line refusals, and the floor under each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.cli import main
from forgetless.config import ConfigError
from forgetless.evaluation.answer_extraction import constant_floor, declared, parse_extraction, resolve
from forgetless.evaluation.domain import domain_accuracy
from forgetless.evaluation.exact_match import exact_match
from tests.conftest import make_model, write_jsonl
from tests.test_cli_errors import _one_line

PARIS = " Paris.\n\nThe capital"


@pytest.mark.parametrize(("spec", "generation", "answer"), [
    ("answer_marker", PARIS, None),
    ("answer_marker", " E = 5.\nAnswer: 12.", "12"),
    ("first_line", PARIS, "paris"),
    ("first_line", "\n\n  'New York'!\nmore", "new york"),
    ("first_line", " Paris, the largest city", "paris, the largest city"),
    ("first_line", " \n\t", None),
    ("gold_prefix", PARIS, "paris the capital"),
    ("gold_prefix", " -1,024.5 = x", "-1,024.5 x"),
    ("first_number", " It is 1,024 bytes", "1024"),
    ("first_number", " -3.5 or 2", "-3.5"),
    ("first_number", " none", None),
    (r"regex:capital is (\w+)", " The capital is Berlin.", "Berlin"),
    (r"regex:(\d+)|(yes)", " yes 12", "yes"),  # several groups: the first non-empty one, as lm-eval
    (r"regex:[A-Z]\w+", " the Fox", "Fox"),  # no group: the whole match
])
def test_answers(spec: str, generation: str, answer: str | None) -> None:
    assert parse_extraction(spec).answer(generation) == answer


@pytest.mark.parametrize(("spec", "generation", "gold", "correct"), [
    ("answer_marker", PARIS, "Paris", False),
    ("first_line", PARIS, "Paris", True),
    ("gold_prefix", PARIS, "Paris", True),
    ("first_line", " paris", "Paris.", True),  # the gold's punctuation and case go too
    ("first_line", " Paris, France", "Paris", False),
    ("gold_prefix", " Parisian food", "Paris", False),  # a gold must end at a word boundary
    ("gold_prefix", ' "Berlin", of course', "Berlin", True),
    ("gold_prefix", " Washington, D.C. is", "Washington D.C.", True),
    ("gold_prefix", " St. John's.", "Saint John's", False),
    ("gold_prefix", " -12", "12", False),
    ("gold_prefix", " New  York city", "new york", True),  # whitespace runs collapsed
    ("gold_prefix", " 120", "12", False),
    ("gold_prefix", " 12.5", "12", False),
    ("gold_prefix", " 12. Then", "12", True),
    ("gold_prefix", " 12, then", "12", True),
    ("first_number", " 5 + 7 = 12", "12", False),  # the first number, not the last
    ("first_number", " 12.0", "12", False),
    ("first_number", " 1,000 of them", "1000", True),
    (r"regex:is (\w+)", " it is Au", "Au", True),
    (r"regex:is (\w+)", " it is au", "Au", False),  # case kept
])
def test_matches(spec: str, generation: str, gold: str, correct: bool) -> None:
    assert parse_extraction(spec).matches(generation, gold) is correct


@pytest.mark.parametrize("generation", [" Answer: 12", "Answer: 3\nAnswer: 12.", " Answer: 120", " 12", "x"])
def test_answer_marker_is_the_documented_rule(generation: str) -> None:
    """The default scores exactly as before the extractors were named (every existing figure is unchanged)."""
    assert parse_extraction("answer_marker").matches(generation, "12") is exact_match(generation, "12")


@pytest.mark.parametrize(("spec", "message"), [
    ("last_word", r"--x: 'last_word' is not an answer extraction; expected one of answer_marker, first_line, "
                  r"gold_prefix, first_number or regex:<pattern>$"),
    ("regex:(", r"--x: 'regex:\(' is not a valid regular expression \(missing \), .*\); expected regex:<pattern>"),
    ("regex:", r"--x: 'regex:' has no pattern; expected regex:<pattern>"),
])
def test_bad_names_are_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_extraction(spec, "--x")
    assert "\n" not in str(err.value)


def test_flag_refuses_a_bad_extractor_naming_it(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    domain = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "The capital of France is", "answer": "Paris"}])
    out = tmp_path / "out.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--domain", str(domain), "--answer-extraction", "regex:[",
                 "--output", str(out)]) == 2
    line = _one_line(capsys)
    assert "--answer-extraction:" in line and "'regex:[' is not a valid regular expression" in line
    assert "expected regex:<pattern>" in line and not out.exists()


def test_study_config_refuses_a_bad_extractor_naming_the_key() -> None:
    from forgetless.config import build_config
    from forgetless.study.config import StudyConfig

    values = {"output": "o", "base_model": "b", "data": {"train": "t.jsonl", "test": "x.jsonl", "general": "g.jsonl"},
              "methods": [{"name": "sft", "learning_rates": [1e-3]}], "eval": {"answer_extraction": "firstline"}}
    with pytest.raises(ConfigError, match=r"study.yaml: key 'eval.answer_extraction': .*'firstline' is not an answer "
                                          r"extraction; expected one of answer_marker") as err:
        build_config(StudyConfig, values, "study.yaml")
    assert "\n" not in str(err.value)
    values["eval"]["answer_extraction"] = "first_line"
    assert build_config(StudyConfig, values, "study.yaml").eval.answer_extraction == "first_line"


def test_merge_flag_refuses_a_bad_extractor(saved_models: list[Path], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "merged"
    assert main(["merge", "--models", *map(str, saved_models[:2]), "--rule", "average", "--output", str(out),
                 "--answer-extraction", "first_word"]) == 2
    assert "'first_word' is not an answer extraction" in _one_line(capsys) and not out.exists()


def test_a_file_declares_its_extractor_once() -> None:
    assert declared([{"answer_extraction": "first_line"}, {}], "f.jsonl") == "first_line"
    assert declared([{}, {}], "f.jsonl") is None
    assert resolve(None, [{}], "f.jsonl").spec == "answer_marker"
    assert resolve("gold_prefix", [{"answer_extraction": "first_line"}], "f.jsonl").spec == "gold_prefix"
    with pytest.raises(ValueError, match=r"f.jsonl: records declare different answer_extraction values "
                                         r"\['first_line', 'gold_prefix'\]; expected one per file"):
        declared([{"answer_extraction": "first_line"}, {"answer_extraction": "gold_prefix"}], "f.jsonl")
    with pytest.raises(ValueError, match=r"f.jsonl, field 'answer_extraction': 'nope' is not an answer extraction"):
        declared([{"answer_extraction": "nope"}], "f.jsonl")


def test_floor_uses_the_extractor() -> None:
    golds = ["Paris", "paris.", "Rome", "Rome", "New", "New York"]
    marker = constant_floor(golds, parse_extraction("answer_marker"))
    assert marker["majority_answer"] == "Rome" and marker["floor_correct"] == [0, 0, 1, 1, 0, 0]
    # first_line folds case and punctuation: "Paris" and "paris." are one answer, first seen wins the tie.
    line = constant_floor(golds, parse_extraction("first_line"))
    assert line["majority_answer"] == "Paris" and line["floor_correct"] == [1, 1, 0, 0, 0, 0]
    # gold_prefix: always saying "new york" also scores the gold "New".
    prefix = constant_floor(golds, parse_extraction("gold_prefix"))
    assert prefix["majority_answer"] == "Paris"  # 2 each; Paris is seen first
    assert constant_floor(["New", "New York", "Rome"], parse_extraction("gold_prefix"))["floor_correct"] == [1, 1, 0]
    assert marker["majority_accuracy"] == pytest.approx(2 / 6)


def test_study_floor_reads_the_test_file_with_its_extractor(tmp_path: Path) -> None:
    from forgetless.study.running.data_checks import constant_floor as study_floor

    rows = [{"prompt": f"q{i}", "answer": a} for i, a in enumerate(["Paris", "paris", "Rome"])]
    test = write_jsonl(tmp_path / "test.jsonl", rows)
    assert study_floor(test)["majority_accuracy"] == pytest.approx(1 / 3)  # answer_marker: case kept
    assert study_floor(test, extraction="first_line")["majority_accuracy"] == pytest.approx(2 / 3)
    declared_file = write_jsonl(tmp_path / "declared.jsonl", [{**r, "answer_extraction": "first_line"} for r in rows])
    floor = study_floor(declared_file)
    assert floor["floor_extraction"] == "first_line" and floor["floor_correct"] == [1, 1, 0]
    assert study_floor(declared_file, limit=1)["floor_correct"] == [1]


def test_domain_accuracy_records_the_extractor(tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    rows = [{"prompt": "Sum 1 and 2.\n", "answer": "3", "answer_extraction": "first_number"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    model = make_model(tokenizer)
    assert domain_accuracy(model, tokenizer, path, 4, progress=False)["answer_extraction"] == "first_number"
    scored = domain_accuracy(model, tokenizer, path, 4, progress=False, answer_extraction="first_line")
    assert scored["answer_extraction"] == "first_line" and set(scored["predictions"][0]) == {
        "prompt", "generation", "answer", "gold", "correct"}


def test_eval_report_records_the_extractor(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    domain = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "The capital of France is", "answer": "Paris"}])
    out = tmp_path / "out.json"
    assert main(["eval", "--model", str(tiny_model_dir), "--base", str(tiny_model_dir), "--domain", str(domain),
                 "--answer-extraction", "gold_prefix", "--max-new-tokens", "3", "--resamples", "50",
                 "--no-progress", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["domain"]["answer_extraction"] == "gold_prefix"
    assert report["base"]["domain"]["answer_extraction"] == "gold_prefix"
    assert report["settings"]["answer_extraction"] == "gold_prefix"
