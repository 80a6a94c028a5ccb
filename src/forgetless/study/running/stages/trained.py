"""The trained stage: every method x learning rate x seed fine-tuned from the base, then evaluated.

Methods that replay study-made samples (context-free, contextual, corpus) wait for
those samples' cells, made once for all of them.
"""

from __future__ import annotations

from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.running.context import Context
from forgetless.study.running.graph import Graph, Work
from forgetless.study.running.model_cells import (diverged, eval_task_id, eval_work, evaluate, make_row, plain_sft,
                                                  train_cell, train_model, train_task_id, train_work, trained_label,
                                                  trained_models, trained_row_id)
from forgetless.study.running.replay_cells import REPLAY_SOURCES, replay_samples, replay_sources
from forgetless.study.rows import Row, RowKind, family_of
from forgetless.study.running.stages import Planned
from forgetless.study.running.tasks import ContextSpec, context_for, spec_of

REPLAY_SAMPLES = "samples/replay"


def replay_samples_task(spec: ContextSpec, kind: str) -> None:
    """Make the replay samples of one source (context-free, contextual, corpus) that replay methods train on."""
    replay_samples(context_for(spec), kind)


def train_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int) -> None:
    """Train one model (resuming from its last checkpoint when a previous attempt was killed)."""
    train_model(context_for(spec), method, lr, seed)


def eval_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int) -> None:
    """Evaluate one trained model."""
    ctx = context_for(spec)
    unit, _ = train_cell(ctx, method, lr, seed)
    if diverged(unit):
        return  # no model to measure; the report lists the run
    path = str(unit.dir / "model")
    evaluate(ctx, {"model": unit.key}, trained_label(ctx.cfg, method, lr, seed), lambda: ctx.load_model(path))


class TrainedStage:
    """One row per fine-tuned model, with its training time, learning curve and method family."""

    name = "trained"

    def weight(self, cfg: StudyConfig) -> float:
        return len(list(trained_models(cfg))) * 7.0  # training (6) and evaluation (1)

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        spec, cfg = spec_of(ctx), ctx.cfg
        ids: list[str] = []
        replay: dict[str, str] = {}
        for kind in REPLAY_SOURCES:
            if any(kind in replay_sources(m) for m in cfg.methods):
                # The context-free task keeps its id from before the other sources existed.
                task = REPLAY_SAMPLES if kind == "context-free" else f"{REPLAY_SAMPLES}/{kind}"
                replay[kind] = graph.add(task, f"make the {kind} replay samples", replay_samples_task, (spec, kind),
                                         work=Work("samples", samples=0 if kind == "corpus"
                                                   else cfg.context_free.replay_samples))
                ids.append(task)
        for method, lr, seed in trained_models(cfg):
            row_id = trained_row_id(method, lr, seed)
            label = f"{method.name} lr={lr:g} seed={seed}"
            train = graph.add(train_task_id(row_id), f"train {label}", train_task, (spec, method, lr, seed),
                              [replay[kind] for kind in replay_sources(method)], gpu=True,
                              work=train_work(cfg, method))
            ids += [train, graph.add(eval_task_id(row_id), f"evaluate {label}", eval_task, (spec, method, lr, seed),
                                     [train, *planned.before_eval], work=eval_work(cfg))]
        return ids

    def rows(self, ctx: Context) -> list[Row]:
        rows = []
        for method, lr, seed in trained_models(ctx.cfg):
            unit, path = train_model(ctx, method, lr, seed)
            label = trained_label(ctx.cfg, method, lr, seed)
            if diverged(unit):
                ctx.diverged.append({"id": trained_row_id(method, lr, seed), "label": label,
                                     "message": diverged(unit)})
                continue
            m = evaluate(ctx, {"model": unit.key}, label, lambda p=path: ctx.load_model(p))
            trained = unit.load()
            rows.append(make_row(ctx, trained_row_id(method, lr, seed), label, RowKind.TRAINED, m, method=method.name,
                                 learning_rate=lr, seed=seed, train_seconds=trained.get("seconds"),
                                 trained_on=trained.get("machine"), curve=trained.get("curve") or [], path=path,
                                 plain_sft=plain_sft(method), family=method.family or family_of(method.train)))
        return rows
