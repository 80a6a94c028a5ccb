"""Run a study: base -> trained models -> sweeps -> cocktail -> results.jsonl -> report.

Every unit of work is a cell (``forgetless.study.cells``) keyed by what determines
it, so a rerun skips finished cells and a killed study resumes where it stopped:
a half-trained model resumes from its last Trainer checkpoint, finished
evaluations are read back. ``results.jsonl`` and the report are rebuilt from the
cells each time, so every figure in the report comes from the results file.

The cells and their dependencies are declared as a graph (``forgetless.study.plan``)
and run by an executor (``forgetless.study.executors``: serial in this process,
local worker processes, or Ray); the rows are then assembled from the finished
cells in a fixed order (``assemble_rows``), so the results do not depend on the
executor or on the order the cells ran in.

Every model is scored on the validation set as well as the test set, and every
row keeps its per-item scores: the choices (``forgetless.study.selection``), the
recommendation (``forgetless.study.verdicts``) and the seed claims
(``forgetless.study.claims``) are pure functions of the rows. A trained model's
learning curve is measured while it trains and is part of its training cell, so
changing the validation set or the curve settings retrains.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from forgetless.atomic import write_jsonl
from forgetless.models import load_causal_lm, load_tokenizer
from forgetless.config import TrainConfig
from forgetless.data import data_hash
from forgetless.dtypes import resolve_save_dtype, short_name
from forgetless.evaluation.report import read_texts
from forgetless.study.cells import Cell, cell, model_fingerprint
from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.curves import LearningCurve, curve_from_log
from forgetless.study.data_checks import carve_validation, check_answers, constant_floor, duplicate_prompts
from forgetless.study.executors import Executor
from forgetless.study.measure import accuracy, measure, nats_per_token, paired_interval
from forgetless.study.rows import RowKind, family_of
from forgetless.testbed.specs import resolve_spec
from forgetless.training.run import train


@dataclass
class Progress:
    """One line per stage with an overall ETA (train stages weigh more than evaluations)."""

    total: float
    print_fn: Callable[[str], None] = print
    done: float = 0.0
    start: float = field(default_factory=time.time)
    stage: int = 0

    def begin(self, what: str, weight: float, cached: bool) -> None:
        self.stage += 1
        elapsed = time.time() - self.start
        eta = f"ETA {elapsed / self.done * (self.total - self.done) / 60:.1f} min" if self.done else "ETA -"
        state = "cached" if cached else "running"
        share = self.done / self.total if self.total > 0 else 1.0  # cached stages can take the total to 0
        self.print_fn(f"[study {share:4.0%} | {elapsed / 60:5.1f} min | {eta}] {what} ({state})")

    def end(self, weight: float, cached: bool) -> None:
        # Cached stages cost nothing; counting them as done would distort the ETA.
        if cached:
            self.total -= weight
        else:
            self.done += weight


@dataclass
class Context:
    """What every stage of one study shares."""

    cfg: StudyConfig
    root: Path
    base_path: str
    tokenizer: PreTrainedTokenizerBase
    general_texts: list[str]
    test_path: str
    eval_spec: dict[str, Any]
    progress: Progress
    validation_path: str | None = None
    train_data: str | None = None  # the training data models see (train minus a carved validation split)
    general_path: str | None = None  # the held-out general corpus ``general_texts`` was read from
    kl_samples: list[Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)


def _load(path: str, trust_remote_code: bool = False) -> PreTrainedModel:
    """A study model in float32, through the one load policy (safetensors only)."""
    return load_causal_lm(path, torch.float32, trust_remote_code)


def _evaluate(ctx: Context, spec: dict[str, Any], label: str, make: Callable[[], torch.nn.Module]) -> dict[str, Any]:
    """Measure one model (built lazily by ``make``) in its own cell."""
    unit = cell(ctx.root / "cells", "eval", {**spec, "eval": ctx.eval_spec})
    cached = unit.done()
    ctx.progress.begin(f"evaluate {label}", 1.0, cached)
    if cached:
        result = unit.load()
    else:
        model = make()
        unit.save(measure(model, ctx.tokenizer, ctx.general_texts, ctx.test_path, ctx.cfg.eval.domain_limit,
                          ctx.kl_samples, ctx.validation_path, ctx.cfg.eval.validation_limit))
        del model
        result = unit.load()  # exactly what a rerun will read back
    ctx.progress.end(1.0, cached)
    return result


def _row(ctx: Context, row_id: str, label: str, kind: RowKind | str, m: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A results row: means, differences from the base and their paired bootstrap intervals, per-item scores."""
    base = ctx.measurements.get("base", m)
    boot = ctx.cfg.eval.bootstrap
    validation = m.get("validation_correct")
    row = {
        "id": row_id,
        "label": label,
        "kind": RowKind(kind).value,  # cocktail.py still passes the bare string
        "general_nats_per_token": nats_per_token(m),
        "general_bits_per_byte": sum(m["general_nats"]) / math.log(2) / m["general_bytes"],
        "domain_accuracy": accuracy(m),
        "domain_n": len(m["domain_correct"]),
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
    if m.get("kl_nll") and base.get("kl_nll"):
        from forgetless.replay.kl_estimate import estimate_from_nll

        kl = estimate_from_nll(torch.tensor(m["kl_nll"]), torch.tensor(base["kl_nll"]),
                               torch.tensor([len(s.token_ids) for s in ctx.kl_samples or []]))
        row["kl_estimate"], row["kl_ci"] = kl.kl, [kl.ci_low, kl.ci_high]
    ctx.measurements[row_id] = m
    ctx.rows.append(row)
    return row


def train_spec(probe: TrainConfig, base_path: str, data: str | None = None) -> dict[str, Any]:
    """What determines a trained model: its config, the base and the data it sees (the key of its cell).

    ``data`` is the file training reads when it is not ``probe.data`` (train minus a carved validation split).
    """
    spec = {
        "train": {k: v for k, v in probe.identity().items() if k != "save_dtype"},
        "base": model_fingerprint(base_path),
        "data": data_hash(resolve_spec(data or probe.data)),
    }
    saved = resolve_save_dtype(probe.save_dtype, base_path)
    if saved != torch.float32:  # fp32 is what every run wrote before save_dtype: those cells stay valid
        spec["save_dtype"] = short_name(saved)
    return spec


def _train_cell(ctx: Context, method: MethodConfig, lr: float, seed: int,
                data: str | None = None) -> tuple[Cell, LearningCurve | None]:
    """The training cell of one model (whether or not it has run) and its learning-curve callback."""
    probe = ctx.cfg.train_config(method, lr, seed, "unused")
    if data is not None:
        probe = probe.model_copy(update={"data": data})
    used = data or ctx.train_data or probe.data
    spec = train_spec(probe, ctx.base_path, used)
    # A peer domain's curve on this validation set means nothing; a run launched in other
    # processes (training.launcher: accelerate) cannot carry the callback.
    curve = _curve_callback(ctx) if data is None and probe.launcher == "python" else None
    if curve is not None:
        spec["curve"] = {"points": curve.points, "examples": curve.examples, "validation": ctx.eval_spec["validation"],
                         "documents": len(curve.texts), "general": ctx.eval_spec["general"]}
    return cell(ctx.root / "cells", "train", spec), curve


def trained_path(ctx: Context, method: MethodConfig, lr: float, seed: int, data: str | None = None) -> str:
    """Where the model of a training cell is (or will be) written, without running anything."""
    return str(_train_cell(ctx, _with_replay_file(ctx, method), lr, seed, data)[0].dir / "model")


def _train(ctx: Context, method: MethodConfig, lr: float, seed: int, data: str | None = None) -> tuple[Cell, str]:
    """Train one model in its cell (resuming if a previous attempt was killed); return its directory.

    ``data`` replaces the study's training data (peer domains of LM-Cocktail).
    """
    unit, curve = _train_cell(ctx, method, lr, seed, data)
    label = f"{method.name} lr={lr:g} seed={seed}"
    cached = unit.done()
    ctx.progress.begin(f"train {label}", 6.0, cached)
    if not cached:
        model_dir = unit.dir / "model"
        if not (model_dir / "forgetless.json").is_file():  # else: killed after the model was written
            cfg = ctx.cfg.train_config(method, lr, seed, str(model_dir))
            train(cfg.model_copy(update={"model": ctx.base_path,
                                         "data": resolve_spec(data or ctx.train_data or cfg.data)}),
                  callbacks=[curve] if curve is not None else None)
        record = json.loads((model_dir / "forgetless.json").read_text())
        unit.save({"model": str(model_dir), "seconds": record["metrics"].get("wall_seconds"),
                   "curve": curve_from_log(record.get("log_history", []))})
    ctx.progress.end(6.0, cached)
    return unit, str(unit.dir / "model")


def _curve_callback(ctx: Context) -> LearningCurve | None:
    """The learning-curve callback of a domain model, or None when curves are off."""
    ev = ctx.cfg.eval
    if ev.curve_points == 0 or ctx.validation_path is None:
        return None
    return LearningCurve(ctx.tokenizer, ctx.validation_path, ev.curve_examples,
                         ctx.general_texts[: ev.curve_documents], ev.curve_points)


REPLAY_SOURCES = ("context-free", "contextual", "corpus")


def _samples_cell(ctx: Context, kind: str, purpose: str, num_samples: int, temperature: float, seed: int) -> Cell:
    """The cell of one set of replay (or KL-estimate) samples of ``kind`` (whether or not it was made)."""
    cf = ctx.cfg.context_free
    if kind == "context-free":
        fingerprint: dict[str, Any] = {"base": model_fingerprint(ctx.base_path)}
    elif kind == "contextual":
        fingerprint = {"base": model_fingerprint(ctx.base_path), "prompts": data_hash(_contextual_prompts(ctx))}
    else:
        fingerprint = {"corpus": data_hash(_replay_corpus(ctx))}
    # Context-free cells keep the key they had before the other kinds existed.
    spec = {**fingerprint, "purpose": purpose, "n": num_samples, "max_new_tokens": cf.max_new_tokens,
            "temperature": temperature, "seed": seed, **({"kind": kind} if kind != "context-free" else {})}
    return cell(ctx.root / "cells", "samples", spec)


def _contextual_prompts(ctx: Context) -> str:
    """The prompts contextual replay completes: the data the models train on."""
    return ctx.train_data or resolve_spec(ctx.cfg.data.train)


def _replay_source(ctx: Context, kind: str, purpose: str, num_samples: int, temperature: float, seed: int) -> str:
    """Make replay data of one ``kind`` once (a cached cell); return the JSONL path.

    ``context-free``: sequences sampled from the base with no context;
    ``contextual``: the base's completions of training prompts; ``corpus``: pieces
    of the configured general corpus. Uses ``forgetless generate`` itself, so the
    file and its sidecar are what a user gets.
    """
    from forgetless.replay.cli import cmd_generate
    from forgetless.replay.config import GenerateArgs

    cf = ctx.cfg.context_free
    source: dict[str, str]
    if kind == "context-free":
        source = {"model": ctx.base_path}
    elif kind == "contextual":
        source = {"model": ctx.base_path, "prompts": _contextual_prompts(ctx)}
    else:
        source = {"corpus": _replay_corpus(ctx)}
    unit = _samples_cell(ctx, kind, purpose, num_samples, temperature, seed)
    out = unit.dir / "samples.jsonl"
    cached = unit.done()
    ctx.progress.begin(f"make {num_samples} {kind} replay samples ({purpose})", 1.0, cached)
    if not cached:
        cmd_generate(GenerateArgs(**source, output=str(out), num_samples=num_samples, max_new_tokens=cf.max_new_tokens,
                                  temperature=temperature, seed=seed))
        unit.save({"samples": str(out)})
    ctx.progress.end(1.0, cached)
    return str(out)


def _replay_corpus(ctx: Context) -> str:
    """The general text that corpus replay slices: configured, and never the held-out set."""
    cf = ctx.cfg.context_free
    if cf.replay_corpus is None:
        raise ValueError("context_free.replay_corpus: missing; `replay.data: corpus` needs general text to slice "
                         "(e.g. testbed:tiny/general/pretrain.jsonl)")
    corpus = resolve_spec(cf.replay_corpus)
    if Path(corpus).resolve() == Path(resolve_spec(ctx.cfg.data.general)).resolve():
        raise ValueError("context_free.replay_corpus: is data.general, the held-out text that measures forgetting; "
                         "replaying it would hide forgetting; expected other general text")
    return corpus


def replay_sources(method: MethodConfig) -> list[str]:
    """The study-made sources a method trains on: its ``replay.data`` when it names one, and
    ``context-free`` when the KL regularizer's data says so."""
    replay = method.train.get("replay")
    kl = (method.train.get("regularizers") or {}).get("kl") or {}
    replay_data = replay if isinstance(replay, str) else (replay or {}).get("data")
    sources = [replay_data] if replay_data in REPLAY_SOURCES else []
    if kl.get("data") == "context-free" and "context-free" not in sources:
        sources.append("context-free")
    return sources


def replay_samples(ctx: Context, kind: str = "context-free") -> str:
    """Make (or read back) the replay samples of ``kind`` that replay methods train on."""
    cf = ctx.cfg.context_free
    unit = _samples_cell(ctx, kind, "replay", cf.replay_samples, cf.temperature, seed=0)
    # Made once; later methods read the finished cell without a progress line of their own.
    if unit.done():
        return str(unit.dir / "samples.jsonl")
    return _replay_source(ctx, kind, "replay", cf.replay_samples, cf.temperature, seed=0)


def attach_kl_samples(ctx: Context, draw: bool = True) -> None:
    """Give ``ctx`` the held-out samples of the KL estimate (drawn once, a cached cell), if the study uses them.

    With ``draw`` False the samples are attached only when their cell has finished
    (a worker building its context must not draw them a second time).
    """
    n = ctx.cfg.context_free.kl_samples
    if not n or ctx.kl_samples is not None:
        return
    if not draw and not _samples_cell(ctx, "context-free", "kl-estimate", n, 1.0, seed=10_000).done():
        return
    from forgetless.replay.kl_estimate import load_samples

    held_out = _replay_source(ctx, "context-free", "kl-estimate", n, 1.0, seed=10_000)
    ctx.kl_samples = load_samples(held_out)
    ctx.eval_spec["kl_samples"] = data_hash(held_out)


def _with_replay_file(ctx: Context, method: MethodConfig) -> MethodConfig:
    """Replace a replay source name (``context-free``, ``contextual``, ``corpus``) in ``replay.data``,
    or ``context-free`` in ``regularizers.kl.data``, by the study's file of that source."""
    if not replay_sources(method):
        return method
    train = dict(method.train)
    replay = train.get("replay")
    kl = (train.get("regularizers") or {}).get("kl") or {}
    replay_data = replay if isinstance(replay, str) else (replay or {}).get("data")
    if replay_data in REPLAY_SOURCES:
        path = replay_samples(ctx, replay_data)
        train["replay"] = {"data": path} if isinstance(replay, str) else {**replay, "data": path}
    if kl.get("data") == "context-free":
        path = replay_samples(ctx, "context-free")
        train["regularizers"] = {**train["regularizers"], "kl": {**kl, "data": path}}
    return method.model_copy(update={"train": train})


def prepare_domain_data(cfg: StudyConfig, root: Path,
                        print_fn: Callable[[str], None]) -> tuple[str, str, dict[str, Any]]:
    """Check the domain data and settle the validation set before any work starts.

    Refuses a test or validation set without extractable answers; carves a
    validation split from train when none is given; warns about validation or test
    prompts that appear verbatim in train.

    Returns:
        ``(training data, validation set, notes)``; the notes (where the validation set
        came from, duplicate prompt counts) go into the base row for the report.
    """
    train_data = resolve_spec(cfg.data.train)
    check_answers(resolve_spec(cfg.data.test))
    if cfg.data.validation is not None:
        validation = resolve_spec(cfg.data.validation)
        check_answers(validation)
        source = f"`{cfg.data.validation}`"
    else:
        train_data, validation = carve_validation(train_data, cfg.eval.validation_limit, root / "data")
        source = (f"{len(check_answers(validation))} examples carved from `{cfg.data.train}` (seeded sample, "
                  "removed from training; no data.validation given)")
    duplicates = {}
    for name, path in (("validation", validation), ("test", resolve_spec(cfg.data.test))):
        overlap = duplicates[name] = duplicate_prompts(train_data, path)
        if overlap:
            print_fn(f"[study] warning: {overlap} {name} prompts appear verbatim in the training data; their "
                     f"scores overstate what a model learned")
    return train_data, validation, {"validation_source": source, "duplicate_prompts": duplicates}


def _plain_sft(method: MethodConfig) -> bool:
    """Plain SFT: the nll objective with no regularizer, adapter or replay (the baseline of the report)."""
    extras = {k for k, v in method.train.items() if k in {"regularizers", "lora", "replay"} and v}
    return method.train.get("method", "nll") == "nll" and not extras


def _stage_weights(cfg: StudyConfig) -> float:
    runs = sum(len(m.learning_rates) for m in cfg.methods) * len(cfg.seeds)
    swept = runs if cfg.sweeps.methods is None else sum(
        len(m.learning_rates) for m in cfg.methods if m.name in cfg.sweeps.methods) * len(cfg.seeds)
    total = 3.0 + runs * 7.0 + swept * (len(cfg.sweeps.interpolation) + 2 * len(cfg.sweeps.ensemble))
    if cfg.cocktail:
        from forgetless.study.cocktail import cocktail_stage_weight

        total += cocktail_stage_weight(cfg)
    return total


def prepare_context(cfg: StudyConfig, print_fn: Callable[[str], None]) -> tuple[Context, dict[str, Any]]:
    """Resolve the base and the data, check the domain data, and build the study's context.

    Returns:
        ``(context, notes)``; the notes go into the base row.
    """
    root = Path(cfg.output)
    root.mkdir(parents=True, exist_ok=True)
    base_path = resolve_spec(cfg.base_model)
    general = resolve_spec(cfg.data.general)
    test = resolve_spec(cfg.data.test)
    train_data, validation, notes = prepare_domain_data(cfg, root, print_fn)
    ctx = Context(
        cfg=cfg, root=root, base_path=base_path, tokenizer=load_tokenizer(base_path),
        general_texts=read_texts(general)[: cfg.eval.general_limit], test_path=test,
        eval_spec={"general": data_hash(general), "general_limit": cfg.eval.general_limit,
                   "test": data_hash(test), "domain_limit": cfg.eval.domain_limit,
                   "validation": data_hash(validation), "validation_limit": cfg.eval.validation_limit},
        progress=Progress(_stage_weights(cfg), print_fn), validation_path=validation, train_data=train_data,
        general_path=general,
    )
    return ctx, notes


def run_study(cfg: StudyConfig, print_fn: Callable[[str], None] = print, executor: Executor | None = None) -> Path:
    """Run (or resume) a whole study and write its results and report.

    The cells (``forgetless.study.plan``) run on ``executor`` (serial, in this
    process, when None); the rows are then assembled from the finished cells in a
    fixed order, so ``results.jsonl`` is the same whichever executor ran them.

    Returns:
        The study directory, holding ``results.jsonl``, ``report.md`` and ``report.html``.

    Raises:
        CellFailed: a cell failed on a worker (every finished cell is kept; rerun to resume).
    """
    # plan imports this module (its tasks call the cell functions above).
    from forgetless.study.executors import SerialExecutor
    from forgetless.study.plan import plan_cells, register_context
    from forgetless.study.report import write_report

    ctx, notes = prepare_context(cfg, print_fn)
    register_context(ctx)  # the serial executor's tasks run on this very context
    (executor or SerialExecutor()).run(plan_cells(ctx), ctx.root / "logs", print_fn)
    start, ctx.progress = ctx.progress.start, Progress(1.0, lambda _: None)  # every cell is finished: no progress
    rows = assemble_rows(ctx, notes)
    write_jsonl(ctx.root / "results.jsonl", rows)
    report = write_report(ctx.root, cfg)
    print_fn(f"study finished in {(time.time() - start) / 60:.1f} min; report: {report}")
    return ctx.root


def assemble_rows(ctx: Context, notes: dict[str, Any]) -> list[dict[str, Any]]:
    """The results rows in their fixed order, read from the finished cells (any missing cell is computed here)."""
    cfg = ctx.cfg
    attach_kl_samples(ctx)
    base_spec = {"model": model_fingerprint(ctx.base_path)}
    floor = constant_floor(check_answers(ctx.test_path)[: cfg.eval.domain_limit])
    _row(ctx, "base", "base", RowKind.BASE, _evaluate(ctx, base_spec, "base", lambda: _load(ctx.base_path)),
         majority_answer=floor["majority_answer"], majority_accuracy=floor["majority_accuracy"],
         items={"floor_correct": floor["floor_correct"]}, **notes)

    trained: list[tuple[str, str, MethodConfig, float, int]] = []
    for method in cfg.methods:
        for lr in method.learning_rates:
            for seed in cfg.seeds:
                unit, path = _train(ctx, _with_replay_file(ctx, method), lr, seed)
                row_id = trained_row_id(method, lr, seed)
                label = trained_label(cfg, method, lr, seed)
                m = _evaluate(ctx, {"model": unit.key}, label, lambda p=path: _load(p))
                _row(ctx, row_id, label, RowKind.TRAINED, m, method=method.name, learning_rate=lr, seed=seed,
                     train_seconds=unit.load().get("seconds"), trained_on=unit.load().get("machine"), curve=unit.load().get("curve") or [],
                     path=path, plain_sft=_plain_sft(method),
                     family=method.family or family_of(method.train))
                trained.append((row_id, path, method, lr, seed))

    for row_id, path, method, lr, seed in trained:
        if swept(cfg, method):
            _sweep(ctx, row_id, path, method, lr, seed)

    if cfg.cocktail and trained:
        from forgetless.study.cocktail import run_cocktail

        run_cocktail(ctx, trained)
    return ctx.rows


def trained_row_id(method: MethodConfig, lr: float, seed: int) -> str:
    """The results id of a trained model: ``METHOD/lr=LR/seed=S``."""
    return f"{method.name}/lr={lr:g}/seed={seed}"


def trained_label(cfg: StudyConfig, method: MethodConfig, lr: float, seed: int) -> str:
    """A trained model's label in the report (the seed only when the study has several)."""
    return f"{method.name} lr={lr:g}" + (f" s{seed}" if len(cfg.seeds) > 1 else "")


def swept(cfg: StudyConfig, method: MethodConfig) -> bool:
    """Whether the WiSE-FT and ensemble sweeps cover this method's models."""
    return cfg.sweeps.methods is None or method.name in cfg.sweeps.methods


def _sweep(ctx: Context, row_id: str, path: str, method: MethodConfig, lr: float, seed: int) -> None:
    """The WiSE-FT interpolation curve and the output ensemble of one fine-tuned model with the base."""
    holder: dict[str, Any] = {}
    name = row_id.split("/")[0]
    family = method.family or family_of(method.train)
    for alpha in ctx.cfg.sweeps.interpolation:
        m = sweep_point(ctx, path, name, lr, RowKind.INTERPOLATION, alpha, holder)
        _row(ctx, f"{row_id}/interp={alpha:g}", f"{name} lr={lr:g} a={alpha:g}", RowKind.INTERPOLATION, m,
             method=method.name, learning_rate=lr, seed=seed, alpha=alpha, parent=row_id, family=family)
    for alpha in ctx.cfg.sweeps.ensemble:
        m = sweep_point(ctx, path, name, lr, RowKind.ENSEMBLE, alpha, holder)
        _row(ctx, f"{row_id}/ensemble={alpha:g}", f"{name} lr={lr:g} ens a={alpha:g}", RowKind.ENSEMBLE, m,
             method=method.name, learning_rate=lr, seed=seed, alpha=alpha, parent=row_id, family=family)


def sweep_point(ctx: Context, path: str, name: str, lr: float, kind: RowKind, alpha: float,
                holder: dict[str, Any]) -> dict[str, Any]:
    """Measure one point of a fine-tuned model's WiSE-FT (``INTERPOLATION``) or ``ENSEMBLE`` sweep (a cell).

    ``holder`` keeps the interpolator across the points of one sweep, so the two
    models are loaded once per sweep rather than once per point.
    """
    from forgetless.merging.ensemble import OutputEnsemble
    from forgetless.merging.sweep import Interpolator

    fingerprint, base = model_fingerprint(path), model_fingerprint(ctx.base_path)
    if kind == RowKind.ENSEMBLE:
        return _evaluate(ctx, {"ensemble": fingerprint, "base": base, "alpha": alpha},
                         f"{name} lr={lr:g} ensemble a={alpha:g}",
                         lambda: OutputEnsemble(_load(ctx.base_path), _load(path), alpha))

    def interpolated() -> torch.nn.Module:
        # Loaded only when a point is not cached: θ_α is written into one model in memory.
        if "interp" not in holder:
            holder["interp"] = Interpolator(_load(path), ctx.base_path, path)
        holder["interp"].set_alpha(alpha)
        return holder["interp"].model

    return _evaluate(ctx, {"interpolate": fingerprint, "base": base, "alpha": alpha},
                     f"{name} lr={lr:g} WiSE-FT a={alpha:g}", interpolated)
