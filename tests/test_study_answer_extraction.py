"""A study with ``eval.answer_extraction``: every row records the extractor, and the floor compares answers with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forgetless.study.config import load_study
from forgetless.study.running.runner import run_study
from tests.conftest import write_jsonl
from tests.test_study import study_yaml  # noqa: F401  (the tiny study fixture)


def test_rows_and_floor_use_the_configured_extractor(study_yaml: Path) -> None:  # noqa: F811
    values = yaml.safe_load(study_yaml.read_text())
    # Under first_line "Paris" and "paris." are one answer: the floor is 2 of 6, not answer_marker's 1 of 6.
    golds = ["Paris", "paris.", "Rome", "Oslo", "Bern", "Kyiv"]
    values["data"]["test"] = str(write_jsonl(study_yaml.parent / "capitals.jsonl",
                                             [{"prompt": f"Capital {i}:", "answer": g} for i, g in enumerate(golds)]))
    values.update(methods=[{"name": "sft", "learning_rates": [1e-2]}], sweeps={"interpolation": [], "ensemble": []},
                  eval={"bootstrap": 50, "curve_points": 0, "answer_extraction": "first_line"},
                  context_free={"kl_samples": 0})
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert {r["answer_extraction"] for r in rows} == {"first_line"} and len(rows) == 2
    base = rows[0]
    assert base["majority_answer"] == "Paris" and base["majority_accuracy"] == pytest.approx(2 / 6)
    assert base["items"]["floor_correct"] == [1, 1, 0, 0, 0, 0]
    assert "Answers are read with `first_line`" in (root / "report.md").read_text()

    # The extractor is part of the evaluation cells' key: a rerun with the default measures afresh.
    del values["eval"]["answer_extraction"]
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert {r["answer_extraction"] for r in rows} == {"answer_marker"}
    assert rows[0]["majority_accuracy"] == pytest.approx(1 / 6)
