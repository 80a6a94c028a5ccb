"""The base stage: the base model's evaluation, the row every other row is compared to."""

from __future__ import annotations

from typing import Any

from forgetless.study.running.cells import model_fingerprint
from forgetless.study.config import StudyConfig
from forgetless.study.running.context import Context
from forgetless.study.running.data_checks import constant_floor
from forgetless.study.running.graph import Graph
from forgetless.study.running.model_cells import eval_task_id, eval_work, evaluate, make_row
from forgetless.study.rows import Row, RowKind
from forgetless.study.running.stages import Planned
from forgetless.study.running.tasks import ContextSpec, context_for, spec_of

BASE_ID = "base"


def measure_base(ctx: Context) -> dict[str, Any]:
    """The base's measurements (a cell)."""
    return evaluate(ctx, {"model": model_fingerprint(ctx.base_path)}, "base", lambda: ctx.load_model(ctx.base_path))


def base_eval_task(spec: ContextSpec) -> None:
    """Evaluate the base model."""
    measure_base(context_for(spec))


class BaseStage:
    """Evaluate the base; its row carries the constant-answer floor and the notes about the data."""

    name = "base"

    def weight(self, cfg: StudyConfig) -> float:
        return 3.0  # the base's evaluation and the samples cells (the KL estimate's, replay's)

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        return [graph.add(eval_task_id(BASE_ID), "evaluate base", base_eval_task, (spec_of(ctx),),
                          planned.before_eval, work=eval_work(ctx.cfg))]

    def rows(self, ctx: Context) -> list[Row]:
        floor = constant_floor(ctx.test_path, ctx.cfg.eval.domain_limit, ctx.cfg.eval.answer_extraction)
        return [make_row(ctx, BASE_ID, "base", RowKind.BASE, measure_base(ctx),
                         majority_answer=floor["majority_answer"], majority_accuracy=floor["majority_accuracy"],
                         items={"floor_correct": floor["floor_correct"]}, **ctx.notes)]
