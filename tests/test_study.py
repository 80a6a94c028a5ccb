"""The study runner end to end on the tiny fixtures: results, report, caching, resuming, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forgetless.config import ConfigError
from forgetless.study.running import model_cells
from forgetless.study.config import load_study
from forgetless.study.reporting.frontier import pareto_front
from forgetless.study.running.measure import paired_interval
from forgetless.study.running.runner import run_study
from tests.conftest import write_jsonl


@pytest.fixture
def study_yaml(tmp_path: Path, tiny_model_dir: Path, pc_data: Path) -> Path:
    test = write_jsonl(tmp_path / "test.jsonl", [{"prompt": f"Sum {a} and 1.\n", "answer": str(a + 1)} for a in range(6)])
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": f"The word was with the model {i}."} for i in range(5)])
    cfg = {
        "name": "fixture",
        "output": str(tmp_path / "study"),
        "base_model": str(tiny_model_dir),
        "data": {"train": str(pc_data), "test": str(test), "general": str(general)},
        "training": {"max_steps": 3, "batch_size": 4, "save_steps": 2, "logging_steps": 1},
        "methods": [{"name": "sft", "learning_rates": [1e-3, 1e-2]}],
        "sweeps": {"interpolation": [0.5], "ensemble": []},
        "eval": {"bootstrap": 50},
        "context_free": {"replay_samples": 8, "kl_samples": 6, "max_new_tokens": 12},
        "budget": 0.5,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_study_writes_results_and_report(study_yaml: Path) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"].append({"name": "cf-replay", "learning_rates": [1e-3],
                              "train": {"replay": {"data": "context-free", "ratio": 0.5}}})
    values["sweeps"]["ensemble"] = [0.5]
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds.count("base") == 1 and kinds.count("trained") == 3
    assert kinds.count("interpolation") == 3 and kinds.count("ensemble") == 3
    replayed = next(r for r in rows if r["label"].startswith("cf-replay"))
    record = json.loads((Path(replayed["path"]) / "forgetless.json").read_text())
    assert record["config"]["replay"]["data"].endswith("samples.jsonl") and not replayed["plain_sft"]
    assert all(r["kl_estimate"] is not None for r in rows) and rows[0]["kl_estimate"] == 0.0
    base = rows[0]
    assert base["forgetting"] == 0.0 and base["gain"] == 0.0
    assert base["majority_accuracy"] == pytest.approx(1 / 6)  # six test answers, all different
    for row in rows:
        lo, hi = row["forgetting_ci"]
        assert lo <= row["forgetting"] + 1e-9 and row["forgetting"] - 1e-9 <= hi
    html = (root / "report.html").read_text()
    assert 'id="frontier"' in html and "data:image/png;base64," in html and "http" not in html.replace("https://", "")
    report = (root / "report.md").read_text()
    # Three steps teach the tiny model nothing: the report must not recommend shipping anything.
    assert "**No trained model demonstrably gains.**" in report and "Ship" not in report
    assert "## Seed claims" in report and "| SFT at a high learning rate forgets |" in report
    # Every figure says where it was measured: per row, in summary.json and in the report.
    from forgetless.machine import machine_stamp

    here = machine_stamp()
    assert all(r["measured_on"] == here["summary"] for r in rows) and replayed["trained_on"] == here["summary"]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["machines"] == {here["summary"]: len(rows)} and summary["report_written_on"]["cpu"] == here["cpu"]
    assert f"Measured on {here['summary']}" in (root / "report.md").read_text()


def test_rerun_is_cached_and_identical(study_yaml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_study(study_yaml)
    root = run_study(cfg, print_fn=lambda _: None)
    first = (root / "results.jsonl").read_text()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(model_cells, "train", no_training)
    run_study(cfg, print_fn=lambda _: None)
    assert (root / "results.jsonl").read_text() == first


def test_a_moved_study_finishes_from_its_cache(study_yaml: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29: the study folder and its data copied elsewhere (another disk, another machine) recompute nothing."""
    import shutil

    from forgetless.study.running import measure

    values = yaml.safe_load(study_yaml.read_text())
    values["methods"].append({"name": "cf-replay", "learning_rates": [1e-3],
                              "train": {"replay": {"data": "context-free", "ratio": 0.5}}})
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    first = (root / "results.jsonl").read_text()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(str(root), moved / "renamed-study")
    expected = first.replace(str(root), str(moved / "renamed-study"))
    for key in ("train", "test", "general"):  # the data moves too: cells know it by its content
        new = moved / Path(values["data"][key]).name
        shutil.copy(values["data"][key], new)
        expected = expected.replace(values["data"][key], str(new))  # the notes name the files where they are now
        values["data"][key] = str(new)
    values["output"] = str(moved / "renamed-study")
    study_yaml.write_text(yaml.safe_dump(values))

    def nothing_recomputed(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished cell was computed again after the move")

    monkeypatch.setattr(model_cells, "train", nothing_recomputed)
    monkeypatch.setattr(model_cells, "measure", nothing_recomputed)
    monkeypatch.setattr(measure, "measure", nothing_recomputed)
    again = run_study(load_study(study_yaml), print_fn=lambda _: None)
    assert (again / "results.jsonl").read_text() == expected


def test_killed_study_resumes_to_the_same_results(study_yaml: Path) -> None:
    cfg = load_study(study_yaml)
    root = run_study(cfg, print_fn=lambda _: None)
    first = (root / "results.jsonl").read_text()
    # Simulate a kill after the first model was trained: drop every later cell.
    cells = sorted((root / "cells").iterdir(), key=lambda p: (p / "result.json").stat().st_mtime)
    for late in cells[3:]:
        (late / "result.json").unlink()
    run_study(cfg, print_fn=lambda _: None)
    assert (root / "results.jsonl").read_text() == first


def test_changing_one_method_reruns_only_its_cells(study_yaml: Path) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"].append({"name": "other", "learning_rates": [1e-3], "train": {"weight_decay": 0.1}})
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    before = {p.name for p in (root / "cells").iterdir()}
    values["methods"][1]["train"]["weight_decay"] = 0.2
    study_yaml.write_text(yaml.safe_dump(values))
    lines: list[str] = []
    run_study(load_study(study_yaml), print_fn=lines.append)
    running = [line for line in lines if "(running)" in line]
    assert running and all("other" in line for line in running)
    assert before <= {p.name for p in (root / "cells").iterdir()}


def test_config_errors_name_the_key(study_yaml: Path) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"][0]["train"] = {"learning_rate": 1.0}
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=r"methods\.0\.train"):
        load_study(study_yaml)
    values["methods"][0]["train"] = {"epochz": 1}
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="epochz"):
        load_study(study_yaml)
    values["methods"][0]["train"] = {}
    values["sweeps"] = {"interpolation": [0.0, 0.5]}
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=r"sweeps\.interpolation"):
        load_study(study_yaml)


def test_pareto_front() -> None:
    rows = [
        {"id": "a", "label": "a", "forgetting": 0.0, "gain": 0.0},
        {"id": "b", "label": "b", "forgetting": 0.2, "gain": 0.5},
        {"id": "c", "label": "c", "forgetting": 0.3, "gain": 0.4},  # dominated by b
        {"id": "d", "label": "d", "forgetting": 1.0, "gain": 0.6},
    ]
    assert [r["id"] for r in pareto_front(rows)] == ["a", "b", "d"]


def test_paired_interval_of_identical_models_is_zero() -> None:
    m = {"general_nats": [3.0, 5.0, 4.0], "general_tokens": [2, 3, 2], "domain_correct": [1, 0, 1]}
    assert paired_interval(m, m, "forgetting", 100) == (0.0, 0.0)
    shifted = {**m, "general_nats": [n + t * 0.5 for n, t in zip(m["general_nats"], m["general_tokens"])]}
    lo, hi = paired_interval(shifted, m, "forgetting", 100)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_validation_is_carved_from_train_when_absent(study_yaml: Path) -> None:
    lines: list[str] = []
    root = run_study(load_study(study_yaml), print_fn=lines.append)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    carved = [json.loads(line) for line in (root / "data" / "validation.jsonl").read_text().splitlines()]
    kept = [json.loads(line) for line in (root / "data" / "train.jsonl").read_text().splitlines()]
    assert len(carved) == 3 and len(kept) == 13  # a fifth of 16, at most eval.validation_limit
    assert not {r["prompt"] for r in carved} & {r["prompt"] for r in kept}
    trained = next(r for r in rows if r["kind"] == "trained")
    record = json.loads((Path(trained["path"]) / "forgetless.json").read_text())
    assert record["config"]["data"] == str(root / "data" / "train.jsonl")  # models never see the validation split
    assert all(r["validation_n"] == 3 and len(r["items"]["validation_correct"]) == 3 for r in rows)
    assert "carved from" in rows[0]["validation_source"]
    assert rows[0]["items"]["floor_correct"] == [1, 0, 0, 0, 0, 0]  # the first answer ("1") wins the 6-way tie
    # Four test prompts ("Sum a and 1.") are training prompts: the study says so.
    assert rows[0]["duplicate_prompts"]["test"] == 4 and any("4 test prompts" in line for line in lines)
    assert "4 test prompts appear verbatim" in (root / "report.md").read_text()


def test_test_set_without_answers_is_refused_before_training(study_yaml: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    bad = write_jsonl(tmp_path / "bad_test.jsonl", [{"prompt": "Sum 1 and 1.\n", "answer": "2"},
                                                   {"prompt": "Sum 2 and 1.\n", "completion": " three"}])
    values["data"]["test"] = str(bad)
    study_yaml.write_text(yaml.safe_dump(values))

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before the data was checked")

    monkeypatch.setattr(model_cells, "train", no_training)
    with pytest.raises(ValueError, match=r"bad_test\.jsonl, line 2, field 'answer'"):
        run_study(load_study(study_yaml), print_fn=lambda _: None)


def test_given_validation_set_is_used_as_is(study_yaml: Path, tmp_path: Path) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    validation = write_jsonl(tmp_path / "val.jsonl", [{"prompt": f"Sum {a} and 2.\n", "answer": str(a + 2)}
                                                      for a in range(5)])
    values["data"]["validation"] = str(validation)
    values["methods"][0]["learning_rates"] = [1e-3]
    values["sweeps"]["interpolation"] = []
    values["eval"]["validation_limit"] = 4
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert not (root / "data").exists() and rows[0]["validation_source"] == f"`{validation}`"
    assert [r["validation_n"] for r in rows] == [4, 4]
    assert rows[0]["duplicate_prompts"] == {"validation": 4, "test": 4}  # "Sum 0..3 and 2." are training prompts


def test_learning_curves_start_at_the_base_and_end_at_the_model(study_yaml: Path) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"][0]["learning_rates"] = [1e-2]
    values["sweeps"] = {"interpolation": [], "ensemble": []}
    values["training"]["precision"] = "fp32"  # curve points are measured at the training precision
    values["methods"].append({"name": "lora", "learning_rates": [1e-2], "train": {"lora": True, "lora_r": 4}})
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    base, model, lora = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert [p["step"] for p in lora["curve"]] == [0, 1, 2, 3]  # measured through the PEFT wrapper too
    # 3 steps, 4 planned points: steps round(3k/4) = 1, 2, 2, 3, plus the starting model.
    assert [p["step"] for p in model["curve"]] == [0, 1, 2, 3]
    # Same validation examples (all 3) and the same 5 documents as the full evaluation, so the first
    # point is the base's score and the last is the finished model's.
    first, last = model["curve"][0], model["curve"][-1]
    assert first["validation_accuracy"] == base["validation_accuracy"]
    assert first["general_nats_per_token"] == pytest.approx(base["general_nats_per_token"], rel=1e-5)
    assert last["general_nats_per_token"] == pytest.approx(model["general_nats_per_token"], rel=1e-5)
    assert (root / "learning_curves.png").is_file() and "## Learning curves" in (root / "report.md").read_text()


def test_contextual_and_corpus_replay_train_on_their_own_sources(study_yaml: Path, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "pretrain.jsonl", [{"text": f"In the beginning {i} was the word."} for i in range(20)])
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"] = [
        {"name": "ctx-replay", "learning_rates": [1e-3], "train": {"replay": {"data": "contextual", "ratio": 0.5}}},
        {"name": "corpus-replay", "learning_rates": [1e-3], "train": {"replay": {"data": "corpus", "ratio": 0.5}}},
    ]
    values["context_free"]["replay_corpus"] = str(corpus)
    values["sweeps"]["interpolation"] = []
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    rows = {r["label"]: r for r in map(json.loads, (root / "results.jsonl").read_text().splitlines())}
    kinds = {}
    for label, family in (("ctx-replay lr=0.001", "contextual-replay"), ("corpus-replay lr=0.001", "corpus-replay")):
        assert rows[label]["family"] == family
        replay_file = json.loads((Path(rows[label]["path"]) / "forgetless.json").read_text())["config"]["replay"]["data"]
        meta = json.loads(Path(replay_file).with_suffix(".meta.json").read_text())
        kinds[family] = meta["kind"]
        first = json.loads(Path(replay_file).read_text(encoding="utf-8").split("\n")[0])
        assert set(first) >= ({"prompt", "completion"} if family == "contextual-replay" else {"text"})
    assert kinds == {"contextual-replay": "contextual", "corpus-replay": "corpus"}


def test_corpus_replay_refuses_the_held_out_general_text(study_yaml: Path) -> None:
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"] = [{"name": "corpus-replay", "learning_rates": [1e-3],
                          "train": {"replay": {"data": "corpus", "ratio": 0.5}}}]
    values["context_free"]["replay_corpus"] = values["data"]["general"]
    study_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="replay_corpus: is data.general"):
        run_study(load_study(study_yaml), print_fn=lambda _: None)


def test_a_diverged_run_is_a_finding_not_a_crash(study_yaml: Path) -> None:
    """Issue 29/34: a run whose loss or weights become NaN or inf is listed in the report, and every other model
    (its sweeps skipped) is measured as usual."""
    values = yaml.safe_load(study_yaml.read_text())
    values["methods"] = [{"name": "sft", "learning_rates": [1e-3]},
                         {"name": "wild", "learning_rates": [1e30], "train": {"max_grad_norm": 0.0}}]
    study_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(study_yaml), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert not any(r.get("method") == "wild" for r in rows)
    assert [r["kind"] for r in rows].count("interpolation") == 1  # sft's point only: nothing mixes the wild run
    (run,) = rows[0]["diverged"]
    assert run["id"].startswith("wild") and "step" in run["message"]
    assert "**Diverged**: wild lr=1e+30" in (root / "report.md").read_text()
