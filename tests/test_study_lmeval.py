"""lm-eval tasks as the study's general axis: per-task forgetting with paired intervals, and the frontier on a task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgetless.config import ConfigError
from forgetless.study.reporting.benchmarks import aggregate_forgetting, on_axis
from forgetless.study.config import load_study
from forgetless.study.running.runner import run_study
from tests.test_study import study_yaml  # noqa: F401  (the tiny study fixture)

lm_eval = pytest.importorskip("lm_eval", reason="optional extra: pip install 'forgetless[lmeval]'")


def _with_tasks(study_yaml: Path, frontier: str = "forgetless_cloze") -> Path:  # noqa: F811
    from forgetless.evaluation.cloze import build_cloze, write_cloze
    from forgetless.evaluation.lmeval import write_task_yamls

    values = yaml.safe_load(study_yaml.read_text())
    texts = [" ".join(f"word{d} number {i}" for i in range(60)) for d in range(4)]
    cloze = write_cloze(build_cloze(texts, n_items=10, context_words=8, continuation_words=2),
                        study_yaml.parent / "cloze.jsonl")
    tasks = write_task_yamls(study_yaml.parent / "tasks", cloze, {"sums": values["data"]["test"]}, max_gen_toks=6)
    values["data"]["general"] = {"text": values["data"]["general"],
                                 "lm_eval": {"tasks": ["forgetless_cloze", "forgetless_sums"],
                                             "include_path": str(tasks), "batch_size": 4}}
    values["frontier"] = {"general": frontier}
    values["methods"] = [{"name": "sft", "learning_rates": [1e-2]}]
    values["cocktail"] = None
    study_yaml.write_text(yaml.safe_dump(values))
    return study_yaml


def test_study_measures_lm_eval_tasks_and_plots_the_frontier_on_one(study_yaml: Path) -> None:  # noqa: F811
    cfg = load_study(_with_tasks(study_yaml))
    root = run_study(cfg, print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    base = next(r for r in rows if r["kind"] == "base")
    trained = next(r for r in rows if r["kind"] == "trained")
    for task in ("forgetless_cloze", "forgetless_sums"):
        t = trained["lm_eval"][task]
        mine, theirs = np.asarray(trained["items"][f"lm_eval/{task}"]), np.asarray(base["items"][f"lm_eval/{task}"])
        assert len(mine) == len(theirs) > 0
        # Forgetting: the base's mean score minus the model's (both metrics are higher-is-better).
        assert t["forgetting"] == pytest.approx(theirs.mean() - mine.mean())
        assert t["score"] == pytest.approx(mine.mean())
        assert t["forgetting_ci"][0] <= t["forgetting"] <= t["forgetting_ci"][1]
        assert base["lm_eval"][task]["forgetting"] == 0.0
    # The sums task is the domain test set through lm-eval: its score is the row's exact match.
    assert trained["lm_eval"]["forgetless_sums"]["score"] == pytest.approx(trained["domain_accuracy"])
    # Every row names the extractor its exact match was read with (the test file declares none: the default).
    assert base["answer_extraction"] == trained["answer_extraction"] == "answer_marker"
    report = (root / "report.md").read_text()
    assert "## Forgetting on benchmarks (lm-eval)" in report and "forgetless_cloze (acc)" in report
    assert "more forgetting on the lm-eval task `forgetless_cloze`" in report
    summary = json.loads((root / "summary.json").read_text())
    assert summary["frontier_axis"] == "forgetless_cloze"
    axis_rows = on_axis(rows, "forgetless_cloze")
    assert {r["id"] for r in axis_rows} == {r["id"] for r in rows if "lm_eval" in r}
    assert all(r["forgetting"] == r["lm_eval"]["forgetless_cloze"]["forgetting"] for r in axis_rows)


def test_aggregate_is_the_mean_of_task_forgetting_with_a_stratified_interval() -> None:
    base = {"kind": "base", "items": {"lm_eval/a": [1, 1, 0, 0], "lm_eval/b": [1, 0]}}
    row = {"lm_eval": {"a": {"higher_is_better": True}, "b": {"higher_is_better": True}},
           "items": {"lm_eval/a": [1, 0, 0, 0], "lm_eval/b": [0, 0]}}
    mean, (lo, hi) = aggregate_forgetting(row, base, ["a", "b"], resamples=2000)
    assert mean == pytest.approx((0.25 + 0.5) / 2)  # a forgets 1/4, b forgets 1/2
    assert lo <= mean <= hi and lo >= 0.0  # no document gained, so no resample can show a gain
    same, (lo0, hi0) = aggregate_forgetting(base | {"lm_eval": row["lm_eval"]}, base, ["a", "b"])
    assert same == 0.0 and lo0 == hi0 == 0.0


def test_frontier_axis_must_be_loss_or_a_measured_task(study_yaml: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match=r"frontier.general: 'mmlu'; expected loss or one of the lm-eval tasks"):
        load_study(_with_tasks(study_yaml, frontier="mmlu"))
    values = yaml.safe_load(study_yaml.read_text())
    values["data"]["general"]["oops"] = 1
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=r"general: expected \{text: SPEC, lm_eval"):
        load_study(study_yaml)
