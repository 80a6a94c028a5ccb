"""``forgetless study CONFIG --dry-run``: counts the cells the study would run, estimates time, trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forgetless.cli import main
from forgetless.study.config import load_study
from forgetless.study.config import StudyConfig
from forgetless.study.rows import Row
from forgetless.study.running.context import Context
from forgetless.study.running.dry_run import Rates, cell_seconds, dry_run, schedule
from forgetless.study.running.graph import Graph, Work
from forgetless.study.running.plan import plan_cells
from forgetless.study.running.runner import prepare_context
from forgetless.study.running.stages import Planned
from forgetless.study.running.stages.registry import STAGES
from tests.test_study import study_yaml  # noqa: F401  (the tiny study fixture)


def _noop() -> None:
    """A task body; the schedule never runs it."""


def test_schedule_matches_a_hand_computed_makespan() -> None:
    graph = Graph()
    graph.add("a", "a", _noop)
    graph.add("b", "b", _noop)
    graph.add("c", "c", _noop, deps=["a"])
    graph.add("d", "d", _noop, deps=["b", "c"])
    seconds = {"a": 2.0, "b": 3.0, "c": 1.0, "d": 4.0}.__getitem__
    assert schedule(graph, seconds, 1) == 10.0  # one slot: the sum
    # Two slots: a on 1 (0-2) and b on 2 (0-3); c after a on 1 (2-3); d after b and c (3-7).
    assert schedule(graph, seconds, 2) == 7.0
    assert schedule(graph, seconds, 8) == 7.0  # the critical path a-c-d (or b-d) bounds it


def test_cell_seconds_scale_with_the_work_each_stage_declares(study_yaml: Path) -> None:  # noqa: F811
    cfg = load_study(study_yaml)
    graph = plan_cells(prepare_context(cfg, lambda _: None)[0])
    rates = Rates(step=0.5, answer=0.1, text=0.01, sample=0.2, machine="test")
    assert cell_seconds(Work("x", steps=2, answers=3, texts=4, samples=5), rates) == pytest.approx(
        2 * 0.5 + 3 * 0.1 + 4 * 0.01 + 5 * 0.2)
    # A training cell: 3 steps of 0.5 s, plus the learning-curve points' answers and documents.
    ev = cfg.eval
    curve = ev.curve_points * (ev.curve_examples * 0.1 + ev.curve_documents * 0.01)
    train = graph.tasks["train/sft/lr=0.001/seed=0"].work
    assert train.kind == "train" and cell_seconds(train, rates) == pytest.approx(3 * 0.5 + curve)
    # An evaluation: its test and validation answers, its general texts and the KL estimate's samples scored.
    evaluation = graph.tasks["eval/base"].work
    answers = (ev.domain_limit or 200) + (ev.validation_limit or 0)
    texts = (ev.general_limit or 0) + (cfg.context_free.kl_samples or 0)
    assert (evaluation.kind, evaluation.answers, evaluation.texts) == ("eval", answers, texts)


class _CostlyStage:
    """A stage of one's own whose one cell trains 7 steps: the dry run must cost it so, whatever its id."""

    name = "costly"

    def weight(self, cfg: StudyConfig) -> float:
        return 1.0

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        return [graph.add("my-own/thing", "a costly thing", _noop, work=Work("costly", steps=7, answers=2))]

    def rows(self, ctx: Context) -> list[Row]:
        return []


def test_a_new_stage_is_costed_as_the_work_it_declares(study_yaml: Path) -> None:  # noqa: F811
    cfg = load_study(study_yaml)
    plain = dry_run(cfg, timing=False, print_fn=lambda _: None)
    more = dry_run(cfg, timing=False, print_fn=lambda _: None, stages=[*STAGES, _CostlyStage()])
    assert more.cells == {**plain.cells, "costly": 1} and more.train_steps == plain.train_steps + 7


def test_dry_run_counts_the_planned_cells_and_trains_nothing(study_yaml: Path) -> None:  # noqa: F811
    cfg = load_study(study_yaml)
    result = dry_run(cfg, workers=2, timing=True, print_fn=lambda _: None)
    planned = plan_cells(prepare_context(cfg, lambda _: None)[0])
    assert sum(result.cells.values()) == len(planned)
    assert result.cells["train"] == 2 and result.train_steps == 2 * 3  # two learning rates, 3 steps each
    assert result.cells["sweep"] == 2  # one interpolation point per trained model
    assert result.rates is not None and result.rates.step > 0 and result.rates.answer > 0
    assert 0 < result.parallel_seconds <= result.serial_seconds
    cells = Path(cfg.output) / "cells"
    assert not cells.exists() or not any(cells.iterdir())  # no cell was written


def test_dry_run_command_prints_the_estimate(study_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(["study", str(study_yaml), "--dry-run", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "dry run, nothing is trained" in out and "cells: " in out and "6 training steps" in out
    assert "estimated time" not in out  # --no-timing


def test_dry_run_refuses_a_missing_base(study_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    values = yaml.safe_load(study_yaml.read_text())
    values["base_model"] = str(study_yaml.parent / "no-such-model")
    study_yaml.write_text(yaml.safe_dump(values))
    assert main(["study", str(study_yaml), "--dry-run", "--no-timing"]) == 2
    assert "no-such-model" in capsys.readouterr().err
