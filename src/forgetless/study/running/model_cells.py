"""The study's model cells, the helpers every stage builds on: train a model, evaluate one, make its row.

- ``train_model``: one fine-tuned model in its cell (resuming from its last Trainer
  checkpoint when a previous attempt was killed); ``trained_path`` says where it is
  without running anything;
- ``evaluate``: the measurements of one model (built lazily, so a cached cell loads
  nothing) in its cell;
- ``make_row``: a results row from measurements: means, differences from the base
  with their paired intervals, and the per-item scores the report recomputes from.

A trained model's learning curve is measured while it trains and is part of its
training cell, so changing the validation set or the curve settings retrains.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

import torch

from forgetless.atomic import write_json
from forgetless.training.config import TrainConfig
from forgetless.data import data_hash
from forgetless.dtypes import resolve_save_dtype, short_name
from forgetless.evaluation.answer_extraction import DEFAULT as DEFAULT_EXTRACTION
from forgetless.study.running.cells import Cell, cell, model_fingerprint
from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.running.context import Context, resolve_data
from forgetless.study.running.curves import LearningCurve, curve_from_log
from forgetless.study.running.graph import Work
from forgetless.study.running.measure import accuracy, measure, nats_per_token, paired_interval, task_forgetting
from forgetless.study.running.replay_cells import with_replay_file, without_kl_log
from forgetless.study.rows import Row
from forgetless.training.run import train
from forgetless.training.trainer import TrainingDiverged


def trained_models(cfg: StudyConfig) -> Iterator[tuple[MethodConfig, float, int]]:
    """``(method, learning rate, seed)`` of every model the study fine-tunes, in the config's order."""
    for method in cfg.methods:
        for lr in method.learning_rates:
            for seed in cfg.seeds:
                yield method, lr, seed


def trained_row_id(method: MethodConfig, lr: float, seed: int) -> str:
    """The results id of a trained model: ``METHOD/lr=LR/seed=S``."""
    return f"{method.name}/lr={lr:g}/seed={seed}"


def trained_label(cfg: StudyConfig, method: MethodConfig, lr: float, seed: int) -> str:
    """A trained model's label in the report (the seed only when the study has several)."""
    return f"{method.name} lr={lr:g}" + (f" s{seed}" if len(cfg.seeds) > 1 else "")


def train_task_id(row_id: str) -> str:
    """The graph id of the task that trains the model of ``row_id`` (what a stage using it waits for)."""
    return f"train/{row_id}"


def eval_task_id(row_id: str) -> str:
    """The graph id of the task that evaluates ``row_id``; a model's sweep points are ``eval/ROW_ID/...``."""
    return f"eval/{row_id}"


def eval_work(cfg: StudyConfig, kind: str = "eval") -> Work:
    """What evaluating one model costs: its greedy answers (test and validation), its general texts and the
    KL estimate's samples scored. A test set without ``domain_limit`` is counted as 200 items."""
    ev = cfg.eval
    return Work(kind, answers=(ev.domain_limit or 200) + (ev.validation_limit or 0),
                texts=(ev.general_limit or 0) + (cfg.context_free.kl_samples or 0))


def train_work(cfg: StudyConfig, method: MethodConfig, curve: bool = True) -> Work:
    """What training one model costs: its steps (``max_steps``; epochs are not estimated) and, with ``curve``,
    the learning curve's answers and texts at each of its points."""
    steps = method.train.get("max_steps", cfg.training.get("max_steps"))
    ev = cfg.eval
    points = ev.curve_points if curve else 0
    return Work("train", steps=int(steps) if steps else 0, answers=points * ev.curve_examples,
                texts=points * ev.curve_documents)


def train_spec(probe: TrainConfig, base_path: str, data: str | None = None) -> dict[str, Any]:
    """What determines a trained model: its config, the base and the data it sees (the key of its cell).

    ``data`` is the file training reads when it is not ``probe.data`` (train minus a carved validation split).
    """
    # The base's and the data's paths stay out: their content is keyed below, so a study whose base or
    # data sits elsewhere on another machine still finds its cells.
    spec = {
        "train": {k: v for k, v in probe.identity().items() if k not in ("save_dtype", "model", "data")},
        "base": model_fingerprint(base_path),
        "data": data_hash(resolve_data(data or probe.data)),
    }
    saved = resolve_save_dtype(probe.save_dtype, base_path)
    if saved != torch.float32:  # fp32 is what every run wrote before save_dtype: those cells stay valid
        spec["save_dtype"] = short_name(saved)
    return spec


def train_cell(ctx: Context, method: MethodConfig, lr: float, seed: int,
               data: str | None = None) -> tuple[Cell, LearningCurve | None]:
    """The training cell of one model (whether or not it has run) and its learning-curve callback.

    ``method`` as configured: a replay source it names is replaced by the study's file of it here.
    """
    method = with_replay_file(ctx, method)
    probe = ctx.cfg.train_config(method, lr, seed, "unused")
    if data is not None:
        probe = probe.model_copy(update={"data": data})
    used = data or ctx.train_data or probe.data
    spec = train_spec(probe, ctx.base_path, used)
    for key in ("add_bos", "chat_template"):  # tokens other than forgetless's old ones (context.tokens_key)
        if key in ctx.eval_spec:
            spec[key] = ctx.eval_spec[key]
    # A peer domain's curve on this validation set means nothing; a run launched in other
    # processes (training.launcher: accelerate) cannot carry the callback.
    curve = curve_callback(ctx) if data is None and probe.launcher == "python" else None
    if curve is not None:
        spec["curve"] = {"points": curve.points, "examples": curve.examples, "validation": ctx.eval_spec["validation"],
                         "documents": len(curve.texts), "general": ctx.eval_spec["general"]}
        if curve.answer_extraction is not None:  # only when set, so curves cached before keep their keys
            spec["curve"]["answer_extraction"] = curve.answer_extraction
    return cell(ctx.root / "cells", "train", spec), curve


def trained_path(ctx: Context, method: MethodConfig, lr: float, seed: int, data: str | None = None) -> str:
    """Where the model of a training cell is (or will be) written, without running anything."""
    return str(train_cell(ctx, method, lr, seed, data)[0].dir / "model")


def train_model(ctx: Context, method: MethodConfig, lr: float, seed: int,
                data: str | None = None) -> tuple[Cell, str]:
    """Train one model in its cell (resuming if a previous attempt was killed); return the cell and its model.

    ``data`` replaces the study's training data (peer domains of LM-Cocktail).
    """
    method = with_replay_file(ctx, method)
    unit, curve = train_cell(ctx, method, lr, seed, data)
    label = f"{method.name} lr={lr:g} seed={seed}"
    cached = unit.done()
    ctx.progress.begin(f"train {label}", 6.0, cached)
    if not cached:
        model_dir = unit.dir / "model"
        if not (model_dir / "forgetless.json").is_file():  # else: killed after the model was written
            cfg = ctx.cfg.train_config(method, lr, seed, str(model_dir))
            try:
                # The replay KL log off (without_kl_log): the evaluation cells measure that estimate anyway.
                train(without_kl_log(cfg.model_copy(update={"model": ctx.base_path,
                                                            "data": resolve_data(data or ctx.train_data or cfg.data)})),
                      callbacks=[curve] if curve is not None else None)
            except TrainingDiverged as error:
                # A finding, not a crash: the report lists the run, every stage skips its missing model.
                unit.save({"model": None, "diverged": str(error), "seconds": None, "curve": []})
                ctx.progress.end(6.0, cached)
                return unit, str(model_dir)
        record = json.loads((model_dir / "forgetless.json").read_text())
        unit.save({"model": str(model_dir), "seconds": record["metrics"].get("wall_seconds"),
                   "curve": curve_from_log(record.get("log_history", []))})
    ctx.progress.end(6.0, cached)
    return unit, str(unit.dir / "model")


def diverged(unit: Cell) -> str | None:
    """Why a finished training cell has no model (its loss or weights became NaN or inf), else None."""
    return unit.load().get("diverged") if unit.done() else None


def curve_callback(ctx: Context) -> LearningCurve | None:
    """The learning-curve callback of a domain model, or None when curves are off."""
    ev = ctx.cfg.eval
    if ev.curve_points == 0 or ctx.validation_path is None:
        return None
    return LearningCurve(ctx.tokenizer, ctx.validation_path, ev.curve_examples,
                         ctx.general_texts[: ev.curve_documents], ev.curve_points, ev.answer_extraction)


def evaluate(ctx: Context, spec: dict[str, Any], label: str, make: Callable[[], torch.nn.Module]) -> dict[str, Any]:
    """Measure one model (built lazily by ``make``) in its own cell, keyed by ``spec`` and the evaluation data.

    ``spec`` must identify the model: ``{"model": model_fingerprint(path)}`` for a
    directory, or what a model built in memory is made of (its inputs' fingerprints
    and parameters).
    """
    unit = cell(ctx.root / "cells", "eval", {**spec, "eval": ctx.eval_spec})
    cached = unit.done()
    ctx.progress.begin(f"evaluate {label}", 1.0, cached)
    if cached:
        result = unit.load()
    else:
        start = time.perf_counter()
        model = make()
        seconds = {"model": time.perf_counter() - start}  # loaded, merged or built in memory
        measured = measure(model, ctx.tokenizer, ctx.general_texts, ctx.test_path, ctx.cfg.eval.domain_limit,
                           ctx.kl_samples, ctx.validation_path, ctx.cfg.eval.validation_limit,
                           ctx.eval_spec.get("lm_eval"), ctx.cfg.eval.answer_extraction, seconds)
        # Beside the result, not in it (a rerun's result is byte-identical); bench/study_breakdown.py reads it.
        write_json(unit.dir / "timing.json", {"seconds": {**seconds, "total": time.perf_counter() - start}})
        unit.save(measured)
        del model
        result = unit.load()  # exactly what a rerun will read back
    ctx.progress.end(1.0, cached)
    return result


def make_row(ctx: Context, row_id: str, label: str, kind: Enum, m: dict[str, Any], **extra: Any) -> Row:
    """A results row: means, differences from the base and their paired bootstrap intervals, per-item scores.

    ``kind`` is a ``RowKind`` (or a stage's own string enum for a new kind of row);
    ``extra`` fields are stored as given. The measurements are kept in
    ``ctx.measurements[row_id]``: the base row's are what every later row is compared to.
    """
    if not isinstance(kind.value, str):
        raise TypeError(f"row {row_id}: kind {kind!r} is not a string enum member")
    base = ctx.measurements.get("base", m)
    boot = ctx.cfg.eval.bootstrap
    validation = m.get("validation_correct")
    row = {
        "id": row_id,
        "label": label,
        "kind": kind.value,
        "general_nats_per_token": nats_per_token(m),
        "general_bits_per_byte": sum(m["general_nats"]) / math.log(2) / m["general_bytes"],
        "domain_accuracy": accuracy(m),
        "domain_n": len(m["domain_correct"]),
        # Cells measured before extractors were named used the only rule there was.
        "answer_extraction": m.get("answer_extraction") or DEFAULT_EXTRACTION,
        "forgetting": nats_per_token(m) - nats_per_token(base),
        "forgetting_ci": list(paired_interval(m, base, "forgetting", boot)),
        "gain": accuracy(m) - accuracy(base),
        "gain_ci": list(paired_interval(m, base, "gain", boot)),
        "validation_accuracy": sum(validation) / len(validation) if validation else None,
        "validation_n": len(validation or []),
        "examples": m.get("examples", [])[:2],
        "measured_on": m.get("machine"),
        **extra,
    }
    # Per-item scores: every paired interval of the report (selection, verdicts, claims) is recomputed from them.
    row["items"] = {"domain_correct": m["domain_correct"], "general_nats": m["general_nats"],
                    "general_tokens": m["general_tokens"], **({"validation_correct": validation} if validation else {}),
                    **row.pop("items", {})}
    if m.get("lm_eval") and base.get("lm_eval"):
        row["lm_eval"] = {}
        for task in m["lm_eval"]:
            score, forgetting, ci = task_forgetting(m, base, task, boot)
            row["lm_eval"][task] = {"metric": m["lm_eval"][task]["metric"], "score": score,
                                    "higher_is_better": m["lm_eval"][task]["higher_is_better"],
                                    "forgetting": forgetting, "forgetting_ci": list(ci)}
            row["items"][f"lm_eval/{task}"] = m["lm_eval"][task]["scores"]
    if m.get("kl_nll") and base.get("kl_nll"):
        # KL(p_base || p_model) per sequence: the mean NLL difference on the base's own samples,
        # with the paired bootstrap every other interval of the row uses (same resamples).
        row["kl_estimate"] = sum(m["kl_nll"]) / len(m["kl_nll"]) - sum(base["kl_nll"]) / len(base["kl_nll"])
        row["kl_ci"] = list(paired_interval(m, base, "kl", boot))
    ctx.measurements[row_id] = m
    return row


def plain_sft(method: MethodConfig) -> bool:
    """Plain SFT: the nll objective with no regularizer, adapter or replay (the baseline of the report)."""
    extras = {k for k, v in method.train.items() if k in {"regularizers", "lora", "replay"} and v}
    return method.train.get("method", "nll") == "nll" and not extras
