"""The search stage on the tiny fixtures: deterministic proposals, resuming, equal budgets, the halving rule,
the best checkpoint within the budget, and the edge-of-range warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from forgetless.config import ConfigError
from forgetless.study.config import load_study
from forgetless.study.running.runner import run_study
from forgetless.study.running import search_cells
from forgetless.study.tuning.halving import (TIE, Outcome, Point, Trial, curve_points, planned_steps, promoted,
                                             propose, rung_steps, score, segment_ends)
from forgetless.study.tuning.space import Dimension
from tests.test_study import study_yaml  # noqa: F401  (the fixture)


@pytest.fixture
def search_yaml(study_yaml: Path) -> Path:  # noqa: F811
    """The fixture study with two tuned methods: 4 trials each, halved once (rungs at steps 2 and 4)."""
    values = yaml.safe_load(study_yaml.read_text())
    values["training"] = {"max_steps": 4, "batch_size": 4, "save_steps": 100, "logging_steps": 1}
    values["methods"] = [
        {"name": "sft", "learning_rates": "auto"},
        {"name": "l2sp", "train": {"regularizers": {"l2sp": {"weight": 0.1}}},
         "search": {"learning_rate": {"low": 1e-4, "high": 1e-1},
                    "params": {"regularizers.l2sp.weight": {"low": 1e-3, "high": 1.0}}}},
    ]
    values["search"] = {"trials": 4, "reduction": 2, "rungs": 2, "seed": 3}
    values["sweeps"] = {"interpolation": [0.5], "ensemble": []}
    values["eval"] = {"bootstrap": 50, "curve_points": 2, "curve_examples": 3, "curve_documents": 2}
    values["context_free"] = {"replay_samples": 8, "kl_samples": 0, "max_new_tokens": 12}
    values["budget"] = 100.0  # every checkpoint is within it: the choice is by validation alone
    study_yaml.write_text(yaml.safe_dump(values))
    return study_yaml


def _rows(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]


def _trial_cells(root: Path) -> dict[str, float]:
    return {p.name: (p / "result.json").stat().st_mtime_ns for p in (root / "cells").glob("trial-*")
            if (p / "result.json").is_file()}


def test_search_runs_resumes_and_budgets_equally(search_yaml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_study(search_yaml)
    assert rung_steps(cfg) == [2, 4] and segment_ends(cfg) == [2, 4] and curve_points(cfg) == 2
    # Killed in the second rung: its first training raises, the first rung's cells are kept.
    real = search_cells._train
    calls: list[int] = []

    def dies_in_rung_two(ctx, method, trial, until, previous, unit, curve):  # type: ignore[no-untyped-def]
        if until > 2:
            raise KeyboardInterrupt("killed")
        calls.append(until)
        return real(ctx, method, trial, until, previous, unit, curve)

    monkeypatch.setattr(search_cells, "_train", dies_in_rung_two)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, print_fn=lambda _: None)
    assert sorted(calls) == [2] * 8  # 2 methods x 4 trials, to the first rung
    first = _trial_cells(Path(cfg.output))
    monkeypatch.setattr(search_cells, "_train", real)
    root = run_study(load_study(search_yaml), print_fn=lambda _: None)
    cells = _trial_cells(root)
    # The resumed search kept every first-rung cell and added the promoted trials' second rung (2 of 4 per method).
    assert {k: cells[k] for k in first} == first and len(cells) == 8 + 2 * 2
    rows = _rows(root)
    searches = rows[0]["searches"]
    assert set(searches) == {"sft", "l2sp"}
    for name, record in searches.items():
        steps = sorted(t["steps"] for t in record["trials"])
        assert steps == [2, 2, 4, 4] and record["steps"] == 12 == planned_steps(cfg), name  # equal budgets
        assert record["chosen"] is not None and record["finished"]
    assert searches["sft"]["steps"] == searches["l2sp"]["steps"]
    assert set(searches["sft"]["space"]) == {"learning_rate"}  # plain SFT: the learning rate alone
    assert set(searches["l2sp"]["space"]) == {"learning_rate", "regularizers.l2sp.weight"}
    tuned = [r for r in rows if r.get("tuned")]
    assert [r["method"] for r in tuned] == ["sft", "l2sp"]
    for row in tuned:
        record = searches[row["method"]]
        assert row["step"] == record["chosen"]["step"] and row["settings"] == record["chosen"]["settings"]
        assert row["family"] in ("sft", "l2sp") and row["kind"] == "trained"
    report = (root / "report.md").read_text()
    assert "## Search (tuned methods)" in report and "12 training steps per method" in report
    assert report.count("| #3 |") == 2 and "Chosen: trial #" in report
    # No Trainer checkpoint is left: the promoted trials' were removed once resumed from, the stopped ones' once
    # halving stopped them; every segment's model stays (the choice may take any).
    assert not list((root / "cells").glob("trial-*/model.work/checkpoints/*checkpoint-*"))
    assert all((p / "model" / "forgetless.json").is_file() for p in (root / "cells").glob("trial-*"))
    # A rerun declares the same cells and finds them all: nothing is trained again, the rows are identical.
    monkeypatch.setattr(search_cells, "_train", lambda *a: pytest.fail("a search cell was recomputed"))
    again = run_study(load_study(search_yaml), print_fn=lambda _: None)
    assert _trial_cells(again) == cells and _rows(again) == rows


def test_proposals_are_deterministic_and_grids_exhaustive(search_yaml: Path) -> None:
    cfg = load_study(search_yaml)
    l2sp = cfg.methods[1]
    first, second = propose(cfg, l2sp), propose(cfg, l2sp)
    assert first == second and len({t.learning_rate for t in first}) == 4
    assert all(1e-4 <= t.learning_rate <= 1e-1 and 1e-3 <= dict(t.params)["regularizers.l2sp.weight"] <= 1.0
               for t in first)
    grid = cfg.methods[0].model_copy(update={"search": cfg.methods[0].search.model_copy(update={
        "learning_rate": Dimension(choices=[1e-3, 2e-3, 5e-3, 1e-2])})})
    assert sorted(t.learning_rate for t in propose(cfg, grid)) == [1e-3, 2e-3, 5e-3, 1e-2]  # each choice once


def test_halving_rule_keeps_the_best_fraction_ties_to_the_earlier_trial() -> None:
    values = {n: v - TIE * n for n, v in enumerate([0.5, 0.7, 0.1, 0.7, 0.2, 0.3, 0.9, 0.0])}
    assert promoted(values, 2) == [0, 1, 3, 6]  # the best 8 // 2, by Optuna's SuccessiveHalvingPruner
    assert promoted(values, 4) == [1, 6]
    tied = {n: 0.5 - TIE * n for n in range(4)}
    assert promoted(tied, 2) == [0, 1]  # exactly n // eta go on: every method trains the same steps
    assert promoted({0: 0.1, 1: 0.2, 2: 0.3}, 4) == [2]  # fewer trials than eta: the best one


def test_score_and_choice_take_the_best_checkpoint_within_the_budget() -> None:
    points = [Point(0, 1, 0.2, 0.1), Point(0, 2, 0.6, 0.3), Point(0, 3, 0.9, 0.8), Point(0, 4, 0.4, 0.2)]
    # Within a budget of 0.5 the best point is step 2 (0.6), not the last step (0.4) nor the over-budget 0.9.
    assert score(points, 4, 0.5, 0) == pytest.approx(0.6)
    assert score(points, 1, 0.5, 0) == pytest.approx(0.2)  # only the points reached by the rung count
    assert score(points, 4, 0.05, 0) == pytest.approx(-1.1)  # nothing within: ranked by least forgetting
    out = Outcome([Trial("m", 0, 1e-3, ()), Trial("m", 1, 1e-2, ())],
                  points={0: points, 1: [Point(1, 2, 0.6, 0.1), Point(1, 4, 0.95, 0.6)]})
    assert out.chosen(0.5) == Point(1, 2, 0.6, 0.1)  # equal score: the one that forgets less
    assert out.chosen(1.0) == Point(1, 4, 0.95, 0.6)
    assert out.chosen(0.01) is None


def test_equal_exact_match_ranks_by_validation_loss_then_trial() -> None:
    # A task learned late: every trial scores 0% at the first rung; the one whose loss fell most is kept.
    slow, fast = [Point(0, 75, 0.0, 0.1, 2.5)], [Point(1, 75, 0.0, 0.3, 1.2)]
    over = [Point(2, 75, 0.0, 0.9, 0.4)]  # learns fastest but forgets past the budget: ranked below both
    values = {n: score(p, 75, 0.5, n) for n, p in enumerate([slow, fast, over])}
    assert values[1] > values[0] > values[2]
    assert promoted(values, 2) == [1]
    # Exact match comes first: one more right answer of 10,000 outweighs any loss.
    assert score([Point(0, 75, 1e-4, 0.1, 50.0)], 75, 0.5, 0) > score([Point(1, 75, 0.0, 0.1, 0.0)], 75, 0.5, 1)
    # Without a loss (an answers-only validation set) equal scores still go to the earlier trial.
    assert score([Point(0, 75, 0.5, 0.1)], 75, 0.5, 0) > score([Point(1, 75, 0.5, 0.1)], 75, 0.5, 1)
    assert score([Point(0, 75, 0.5, 0.1)], 75, 0.5, 0) == pytest.approx(0.5)


def test_edge_of_range_warning(search_yaml: Path) -> None:
    from forgetless.study.tuning.halving import edges

    dims = {"learning_rate": Dimension(low=1e-4, high=1e-2), "lora_r": Dimension(choices=[4, 8, 16])}
    assert edges(dims, {"learning_rate": 1e-3, "lora_r": 8}) == []
    warned = edges(dims, {"learning_rate": 9e-3, "lora_r": 4})
    assert len(warned) == 2 and "high edge" in warned[0] and "low edge" in warned[1]
    assert Dimension(low=0.1, high=1.0, log=False).edge(0.12) == "low"


def test_search_config_is_checked(search_yaml: Path) -> None:
    values = yaml.safe_load(search_yaml.read_text())
    values["training"]["max_steps"] = 5  # not a multiple of 2^(rungs-1)
    search_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="max_steps"):
        load_study(search_yaml)
    values["training"]["max_steps"] = 4
    values["methods"][0]["search"] = {}
    search_yaml.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="one of them"):
        load_study(search_yaml)


def test_lora_and_talr_trials_continue_from_their_rung_checkpoint(search_yaml: Path) -> None:
    values = yaml.safe_load(search_yaml.read_text())
    values["training"]["max_steps"] = 2
    values["methods"] = [{"name": "lora", "learning_rates": "auto", "train": {"lora": True, "lora_r": 4}},
                         {"name": "talr", "learning_rates": "auto", "train": {"method": "talr"}}]
    values["search"] = {"trials": 2, "reduction": 2, "rungs": 2}
    search_yaml.write_text(yaml.safe_dump(values))
    cfg = load_study(search_yaml)
    root = run_study(cfg, print_fn=lambda _: None)
    searches = _rows(root)[0]["searches"]
    assert set(searches["lora"]["space"]) == {"learning_rate", "lora_r"}  # the family's key parameter under auto
    assert set(searches["talr"]["space"]) == {"learning_rate", "method_params.floor"}
    finals = [json.loads(p.read_text()) for p in (root / "cells").glob("trial-*/result.json")]
    last = [r for r in finals if r["step"] == 2]
    assert len(last) == 2 and len(finals) == 2 * 2 + 2  # per method: 2 trials to step 1, the better one to 2
    # The report's training time of the searches: every segment's, read once with the search's outcome.
    assert sum(s["seconds"] for s in searches.values()) == pytest.approx(sum(r["seconds"] for r in finals))
    for result in last:  # the promoted trial resumed from the first rung's checkpoint, not from the base
        record = json.loads((Path(result["model"]) / "forgetless.json").read_text())
        assert record["resolved"]["resumed_from"].endswith("checkpoint-1") and result["steps"] == 1
        assert [p["step"] for p in result["curve"]] == [0, 1, 2]
        assert all(p["validation_loss"] > 0 for p in result["curve"])  # the halving's tie-break is measured
    # Disk: a rung checkpoint goes once the segment that resumed from it is recorded, and a stopped trial's once
    # halving has stopped it (a study rerun under another budget that promotes it trains it from the base, as below).
    firsts = [p for p in (root / "cells").glob("trial-*") if json.loads((p / "result.json").read_text())["step"] == 1]
    kept = [p for p in firsts if (p / "model.work" / "checkpoints" / "checkpoint-1").is_dir()]
    assert len(firsts) == 4 and not kept
    # A deleted second segment trains again from the base (its checkpoint is gone), to the same curve.
    cell_dir = next(p for p in (root / "cells").glob("trial-*")
                    if json.loads((p / "result.json").read_text())["step"] == 2)
    before = json.loads((cell_dir / "result.json").read_text())
    shutil.rmtree(cell_dir)
    run_study(cfg, print_fn=lambda _: None)
    again = json.loads((cell_dir / "result.json").read_text())
    record = json.loads((Path(again["model"]) / "forgetless.json").read_text())
    assert not record["resolved"].get("resumed_from") and again["steps"] == 1
    assert [p["step"] for p in again["curve"]] == [0, 1, 2]
    for a, b in zip(again["curve"], before["curve"]):
        assert a["validation_accuracy"] == b["validation_accuracy"]
        assert a["general_nats_per_token"] == pytest.approx(b["general_nats_per_token"], rel=1e-5)


def test_tune_command_searches_one_method(search_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from forgetless.cli import main

    values = yaml.safe_load(search_yaml.read_text())
    values["methods"] = [{"name": "sft", "learning_rates": [1e-3]}, {"name": "other", "learning_rates": [1e-3]}]
    search_yaml.write_text(yaml.safe_dump(values))
    out = search_yaml.parent / "tuned-sft"
    assert main(["tune", str(search_yaml), "--method", "sft", "--trials", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sft: chosen {\"learning_rate\": " in printed and f"model: {out}" in printed
    rows = _rows(out)
    assert [r["kind"] for r in rows] == ["base", "trained"] and rows[1]["tuned"]  # only the base and the search
    assert len(rows[0]["searches"]["sft"]["trials"]) == 2 and rows[0]["searches"]["sft"]["steps"] == 2 + 4
    assert main(["tune", str(search_yaml), "--method", "nope", "--output", str(out)]) != 0
    assert "no method named 'nope'" in capsys.readouterr().err


def test_seed_claims_judge_a_tuned_family_by_its_tuned_model() -> None:
    from forgetless.study.reporting.claims import seed_claims
    from tests.test_study_verdicts import base, trained

    # A hand-picked TALR rate that learned nothing, and the tuned TALR that learned: the claim compares the tuned one.
    rows = [base(), trained("talr-hand", 2e-3, 0, 0, forget=0.0, family="talr"),
            trained("talr", 1e-3, 50, 50, forget=0.3, family="talr", tuned=True),
            trained("l2sp", 1e-3, 49, 48, forget=0.7, family="l2sp", tuned=True)]
    claim = next(c for c in seed_claims(rows, resamples=200) if c.claim.startswith("TALR retains more general "
                                                                                    "ability than L2-SP"))
    assert claim.verdict == "reproduced" and "`talr/lr=0.001/seed=0`" in claim.evidence
    assert "talr-hand" not in claim.evidence


def test_dry_run_counts_and_times_the_search(search_yaml: Path) -> None:
    from forgetless.study.running.dry_run import cell_seconds, dry_run, schedule
    from forgetless.study.running.runner import prepare_context
    from forgetless.study.running.stages.search import planned_rungs

    cfg = load_study(search_yaml)
    result = dry_run(cfg, workers=2, timing=True, print_fn=lambda _: None)
    # Per method: 4 trials to step 2 (one segment each), the best 2 on to step 4: 6 segments and 12 steps.
    assert result.cells["search train"] == 2 * 6
    rungs = planned_rungs(prepare_context(cfg, lambda _: None)[0])
    assert [sum(t.work.steps for t in g) for g in rungs] == [2 * 4 * 2, 2 * 2 * 2]
    assert result.train_steps >= 2 * planned_steps(cfg)
    # The rungs run one after another on the workers, then the graph: the estimate holds both.
    assert result.rates is not None
    searching = sum(schedule(g, lambda i, g=g: cell_seconds(g.tasks[i].work, result.rates), 2) for g in rungs)
    assert 0 < searching < result.parallel_seconds <= result.serial_seconds
    cells = Path(cfg.output) / "cells"
    assert not cells.exists() or not any(p.name.startswith("trial-") for p in cells.iterdir())  # nothing trained


def test_report_says_what_was_tried_when_no_trial_stays_within_the_budget() -> None:
    from forgetless.study.reporting.search import search_body

    trials = [{"number": n, "settings": {"learning_rate": lr}, "steps": steps, "validation": 0.0,
               "forgetting": f, "best_step": None, "diverged": None, "rungs": 1}
              for n, (lr, steps, f) in enumerate([(2e-3, 75, 4.8), (8e-4, 300, 1.05)])]
    record = {"trials": trials, "rungs": [75, 150, 300], "seconds": 60.0, "finished": True, "reduction": 2,
              "seed": 0, "space": {"learning_rate": "[0.0002, 0.005] log"}, "steps": 375, "budget": 0.5,
              "chosen": None, "edges": []}
    body = search_body([{"searches": {"lora": record}}])
    assert body is not None and "no tuned model of this method is reported" in body
    # Only the proposed settings were tried, not the whole range: the report says which, and what to try next.
    assert "least forgetting at a trial's last checkpoint: +1.050, trial #1 after 300 steps" in body
    assert "span 0.0008 to 0.002 of the range searched" in body and "search.learning_rate.low" in body


def test_curve_scores_loss_only_with_completions_and_sees_a_rewritten_file(tmp_path: Path) -> None:
    from forgetless.study.running.curves import _has_completions

    data = tmp_path / "validation.jsonl"
    data.write_text(json.dumps({"prompt": "Q", "completion": " Answer: 1"}) + "\n")
    assert _has_completions(str(data), 1) and _has_completions(str(data), 1)
    data.write_text(json.dumps({"prompt": "Q", "answer": "1"}) + "\n")  # answers only: no loss to score
    assert not _has_completions(str(data), 1)


def test_replay_trials_train_without_the_kl_log(search_yaml: Path) -> None:
    """A tuned replay method's trials skip the replay KL log, as the study's other training cells do."""
    values = yaml.safe_load(search_yaml.read_text())
    values["training"]["max_steps"] = 2
    values["methods"] = [{"name": "cf-replay", "search": {"learning_rate": {"choices": [1e-3, 2e-3]}},
                          "train": {"replay": {"data": "context-free", "ratio": 0.5}}}]
    values["search"] = {"trials": 2, "reduction": 2, "rungs": 2}
    search_yaml.write_text(yaml.safe_dump(values))
    root = run_study(load_study(search_yaml), print_fn=lambda _: None)
    results = [json.loads(p.read_text()) for p in (root / "cells").glob("trial-*/result.json")]
    assert len(results) == 3  # 2 trials to step 1, the better one on to 2
    for result in results:
        record = json.loads((Path(result["model"]) / "forgetless.json").read_text())
        assert record["config"]["replay"]["kl_eval_samples"] == 0
        assert not any("replay/kl" in h for h in record["log_history"])


def test_report_warns_when_halving_stopped_trials_before_any_had_learned() -> None:
    """A rung where no trial beat the constant-answer floor halved on chance-level exact match and loss (the bias
    docs/tuning.md measured against the grid): the report says so, naming the trials it stopped; a rung where
    one had learned, or a study with no floor, gets no warning."""
    from forgetless.study.reporting.search import search_body
    from forgetless.study.running.stages.search import halvings

    state = Outcome([Trial("sft", n, lr, ()) for n, lr in enumerate([5e-4, 1e-3, 2e-3, 4e-3])])
    state.alive = [[0, 1, 2, 3], [2, 3], [2]]
    state.points = {0: [Point(0, 75, 0.0, 0.1)], 1: [Point(1, 75, 0.0, 0.2)],
                    2: [Point(2, 75, 0.0625, 0.3), Point(2, 150, 0.5, 0.4), Point(2, 300, 0.9, 0.5)],
                    3: [Point(3, 75, 0.031, 0.6), Point(3, 150, 0.2, 0.7)]}
    assert halvings(state, [75, 150, 300]) == [
        {"step": 75, "trials": [{"number": 0, "kept": False, "validation": 0.0},
                                {"number": 1, "kept": False, "validation": 0.0},
                                {"number": 2, "kept": True, "validation": 0.0625},
                                {"number": 3, "kept": True, "validation": 0.031}]},
        {"step": 150, "trials": [{"number": 2, "kept": True, "validation": 0.5},
                                 {"number": 3, "kept": False, "validation": 0.2}]}]
    record = {"trials": [], "rungs": [75, 150, 300], "halvings": halvings(state, [75, 150, 300]), "seconds": 1.0,
              "finished": True, "reduction": 2, "seed": 0, "space": {"learning_rate": "choices"}, "steps": 675,
              "budget": 1.0, "edges": [],
              "chosen": {"trial": 2, "step": 300, "settings": {"learning_rate": 2e-3}, "validation": 0.9,
                         "forgetting": 0.5}}
    body = search_body([{"searches": {"sft": record}, "majority_accuracy": 0.065}])
    assert body is not None
    warnings = [line for line in body.splitlines() if "constant-answer floor" in line]
    assert len(warnings) == 1  # step 150's halving followed learning (50% against 20%)
    assert warnings[0].startswith("- warning: at step 75, where halving stopped trials #0, #1, no trial scored above "
                                  "the constant-answer floor (6.5% on the test set; the best 6.2% on validation)")
    assert "constant-answer floor" not in (search_body([{"searches": {"sft": record}, "majority_accuracy": 0.05}]) or "")
    assert "constant-answer floor" not in (search_body([{"searches": {"sft": record}}]) or "")


def test_each_trials_best_in_the_record_is_the_checkpoint_the_choice_ranks_first(search_yaml: Path) -> None:
    """Two checkpoints of one trial at the same exact match: the record shows the one that forgets less, the one
    the choice takes, not the first reached."""
    from types import SimpleNamespace

    from forgetless.study.running.stages.search import search_record

    cfg = load_study(search_yaml)
    method = next(m for m in cfg.methods if m.tuned)
    state = Outcome([Trial(method.name, 0, 1e-3, ()), Trial(method.name, 1, 2e-3, ())], alive=[[0, 1], [0]],
                    points={0: [Point(0, 2, 0.5, 0.3), Point(0, 4, 0.5, 0.1)], 1: [Point(1, 2, 0.25, 0.2)]})
    record = search_record(SimpleNamespace(cfg=cfg), method, state)
    best = record["trials"][0]
    assert (best["best_step"], best["validation"], best["forgetting"]) == (4, 0.5, 0.1)
    assert (record["chosen"]["trial"], record["chosen"]["step"]) == (0, 4)
