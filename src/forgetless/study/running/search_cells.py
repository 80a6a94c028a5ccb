"""The search's cells: a trial trained in segments, one cell per kept checkpoint.

A trial trains with the study's whole schedule (``training.max_steps``, so its
learning rate at step s is the same whether it stops at the first rung or runs to
the end) and stops at each of its learning-curve points (``halving.segment_ends``).
Each stop is a cell: the model at that step (what the search may choose: the best
checkpoint within the forgetting budget), the Trainer checkpoint the next segment
resumes from, and the learning curve so far. A trial promoted to the next rung
continues from its last segment's checkpoint (copied into the next cell, so a
finished cell never changes), and a killed segment resumes from its own last
checkpoint like any study training cell.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from forgetless.study.config import MethodConfig
from forgetless.study.running.cells import Cell, cell
from forgetless.study.running.context import Context, resolve_data
from forgetless.study.running.curves import LearningCurve, curve_from_log
from forgetless.study.tuning.halving import Point, Trial, curve_points, method_for
from forgetless.study.running.model_cells import curve_callback, train_spec
from forgetless.study.running.replay_cells import with_replay_file, without_kl_log
from forgetless.training.checkpoints import split_checkpoints
from forgetless.training.run import train
from forgetless.training.trainer import TrainingDiverged


class StopAt(TrainerCallback):
    """Save a checkpoint and stop training at ``step`` (the Trainer's schedule still runs to ``max_steps``)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


def _trial_context(ctx: Context) -> Context:
    """The context whose learning curve measures at every point a trial keeps (``halving.curve_points``)."""
    ev = ctx.cfg.eval.model_copy(update={"curve_points": curve_points(ctx.cfg)})
    return dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"eval": ev}))


def segment_cell(ctx: Context, method: MethodConfig, trial: Trial, until: int,
                 record: bool = True) -> tuple[Cell, LearningCurve]:
    """The cell of ``trial`` trained up to step ``until`` (whether or not it has run) and its curve callback
    (``record``: as ``cells.cell``)."""
    tctx = _trial_context(ctx)
    run = with_replay_file(ctx, method_for(method, trial))
    probe = ctx.cfg.train_config(run, trial.learning_rate, ctx.cfg.seeds[0], "unused")
    spec = train_spec(probe, ctx.base_path, ctx.train_data or probe.data)
    for key in ("add_bos", "chat_template"):  # as a study training cell's key (model_cells.train_cell)
        if key in ctx.eval_spec:
            spec[key] = ctx.eval_spec[key]
    curve = curve_callback(tctx)
    if curve is None:
        raise ValueError("search: tuned methods need a validation set and learning curves (eval.curve_points > 0)")
    spec["curve"] = {"points": curve.points, "examples": curve.examples, "validation": ctx.eval_spec["validation"],
                     "documents": len(curve.texts), "general": ctx.eval_spec["general"],
                     "validation_loss": curve.scores_loss,  # halving ranks ties by it: a cell without it is older
                     **({"answer_extraction": curve.answer_extraction} if curve.answer_extraction else {})}
    spec["until"] = until
    return cell(ctx.root / "cells", "trial", spec, record), curve


def _checkpoints(unit: Cell) -> Path:
    """Where a segment's Trainer checkpoints are (the next segment copies its last one from here)."""
    return unit.dir / "model.work" / "checkpoints"


def train_segment(ctx: Context, method: MethodConfig, trial: Trial, until: int, previous: int | None) -> Cell:
    """Train ``trial`` from its checkpoint at ``previous`` (None: from the base) to ``until``, in its cell.

    Keeps the model at ``until`` and, unless ``until`` is the last step, the Trainer checkpoint there (until the
    next segment has resumed from it, or halving stops the trial: ``release_checkpoint``).
    """
    unit, curve = segment_cell(ctx, method, trial, until)
    cached = unit.done()
    ctx.progress.begin(f"train {trial.label} to step {until}", 6.0 * (until - (previous or 0)) / _total(ctx), cached)
    if not cached:
        _train(ctx, method, trial, until, previous, unit, curve)
    ctx.progress.end(6.0 * (until - (previous or 0)) / _total(ctx), cached)
    return unit


def release_checkpoint(ctx: Context, method: MethodConfig, trial: Trial, until: int) -> int:
    """Remove the Trainer checkpoint (weights and optimizer state, about three times the model) that ``trial``'s
    segment to ``until`` kept for a next segment, once halving has stopped the trial there; returns the bytes
    freed. Its model, which the choice may take, stays. Should a later run promote the trial after all (another
    budget), its next segment trains from the base instead, under the same schedule and seed."""
    path = _checkpoints(segment_cell(ctx, method, trial, until, record=False)[0]) / f"checkpoint-{until}"
    if not path.is_dir():
        return 0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    _remove_checkpoint(path)
    return size


def _remove_checkpoint(path: Path) -> None:
    """Delete a Trainer checkpoint directory, renamed first so that it is never found half-deleted."""
    gone = path.with_name(f".removing-{path.name}")
    path.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)


def _total(ctx: Context) -> int:
    """The schedule's length every trial trains under (``training.max_steps``)."""
    return int(ctx.cfg.training["max_steps"])


def _train(ctx: Context, method: MethodConfig, trial: Trial, until: int, previous: int | None, unit: Cell,
           curve: LearningCurve) -> None:
    """Train the segment into ``unit``: copy the previous segment's last checkpoint in (once), resume from it,
    stop at ``until``, keep only the checkpoint the next segment needs, and record the result (a diverged run
    is recorded as such: every later segment of the trial then records it too).

    Once the segment is recorded, the previous segment's checkpoint (weights and optimizer state, three times
    the model) is removed: only this segment resumed from it. Should this segment be trained again (its cell
    deleted), it trains from the base instead, under the same schedule and seed.
    """
    model_dir = unit.dir / "model"
    source = None  # the previous segment's checkpoint this segment resumes from
    if previous is not None:
        before = segment_cell(ctx, method, trial, previous)[0]
        if before.load().get("diverged"):
            unit.save({"model": None, "diverged": before.load()["diverged"], "step": previous, "curve": []})
            return
        source = _checkpoints(before) / f"checkpoint-{previous}"
        if not split_checkpoints(_checkpoints(unit))[0] and source.is_dir():  # first attempt: resume there
            staging = _checkpoints(unit) / f".copy-checkpoint-{previous}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging)
            staging.rename(_checkpoints(unit) / f"checkpoint-{previous}")  # whole or absent: a kill mid-copy
    if not (model_dir / "forgetless.json").is_file():  # else: killed after the model was written
        run = with_replay_file(ctx, method_for(method, trial))
        cfg = ctx.cfg.train_config(run, trial.learning_rate, ctx.cfg.seeds[0], str(model_dir))
        last = until >= _total(ctx)
        try:
            # The replay KL log off, as in the study's other training cells (replay_cells.without_kl_log).
            train(without_kl_log(cfg.model_copy(update={"model": ctx.base_path,
                                                        "data": resolve_data(ctx.train_data or cfg.data),
                                                        "keep_checkpoints": not last})),
                  callbacks=[curve, StopAt(until)])
        except TrainingDiverged as error:
            unit.save({"model": None, "diverged": str(error), "step": until, "curve": []})
            return
    record = json.loads((model_dir / "forgetless.json").read_text())
    for kept in split_checkpoints(_checkpoints(unit))[0]:  # only the checkpoint the next segment resumes from
        if kept.name != f"checkpoint-{until}":
            shutil.rmtree(kept, ignore_errors=True)
    unit.save({"model": str(model_dir), "step": until, "steps": until - (previous or 0),
               "seconds": record["metrics"].get("wall_seconds"),
               "curve": curve_from_log(record.get("log_history", []))})
    if source is not None and source.is_dir():  # nothing else resumes from it (a trial's segments form one chain)
        _remove_checkpoint(source)


def segment_points(result: dict[str, Any], number: int, after: int) -> list[Point]:
    """The kept checkpoints a segment's result adds: its curve points after step ``after`` (forgetting vs step 0)."""
    curve = result.get("curve") or []
    if not curve or curve[0]["step"] != 0:
        return []
    start = curve[0]["general_nats_per_token"]
    return [Point(number, p["step"], p["validation_accuracy"], p["general_nats_per_token"] - start,
                  math.inf if p.get("validation_loss") is None else p["validation_loss"])
            for p in curve if after < p["step"] <= result["step"]]
