"""The study's cells as a graph of tasks: the KL estimate's samples, then every stage's cells.

``plan_cells`` declares every cell of a study with its dependencies, in the order
a serial run takes them:

- the held-out samples of the KL estimate, which every evaluation waits for;
- then each stage's cells, in the order of ``forgetless.study.running.stages.registry.STAGES``
  (the base's evaluation; the replay samples, every training and its evaluation;
  each trained model's sweep points; LM-Cocktail's peers, its mix and its α points).
"""

from __future__ import annotations

from collections.abc import Sequence

from forgetless.study.running.context import Context
from forgetless.study.running.graph import Graph, Work
from forgetless.study.running.replay_cells import attach_kl_samples
from forgetless.study.running.stages import Planned, Stage
from forgetless.study.running.stages.registry import STAGES
from forgetless.study.running.tasks import ContextSpec, context_for, spec_of

KL_SAMPLES = "samples/kl-estimate"


def kl_samples_task(spec: ContextSpec) -> None:
    """Draw the held-out samples of the KL estimate."""
    attach_kl_samples(context_for(spec))


def plan_cells(ctx: Context, stages: Sequence[Stage] = STAGES) -> Graph:
    """Every cell of the study, with its dependencies, in the order a serial run takes them."""
    graph = Graph()
    kl = [graph.add(KL_SAMPLES, "draw the KL estimate's samples", kl_samples_task, (spec_of(ctx),),
                    work=Work("samples", samples=ctx.cfg.context_free.kl_samples))] \
        if ctx.cfg.context_free.kl_samples else []
    planned = Planned(before_eval=kl)
    for stage in stages:
        if stage.name in planned.by_stage:
            raise ValueError(f"study stages: two stages are named {stage.name!r}")
        planned.by_stage[stage.name] = stage.plan(ctx, graph, planned)
    return graph
