"""Run a study: base -> trained models -> sweeps -> cocktail -> results.jsonl -> report.

Every unit of work is a cell (``forgetless.study.cells``) keyed by what determines
it, so a rerun skips finished cells and a killed study resumes where it stopped:
a half-trained model resumes from its last Trainer checkpoint, finished
evaluations are read back. ``results.jsonl`` and the report are rebuilt from the
cells each time, so every figure in the report comes from the results file.
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
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from forgetless.atomic import write_jsonl
from forgetless.config import TrainConfig
from forgetless.data import data_hash
from forgetless.dtypes import resolve_save_dtype, short_name
from forgetless.evaluation.report import read_texts
from forgetless.study.cells import Cell, cell, model_fingerprint
from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.measure import accuracy, measure, nats_per_token, paired_interval
from forgetless.training.run import load_tokenizer, resolve_model, train


def resolve_data(spec: str) -> str:
    """Resolve ``testbed:PRESET/relative/path`` to a file of the built testbed; pass paths through."""
    if spec.startswith("testbed:"):
        from forgetless.testbed.build import build_testbed

        preset, _, rest = spec.removeprefix("testbed:").partition("/")
        # testbed:tiny@bf16/tasks/...: the data of a testbed is the same whatever its base's dtype.
        return str(build_testbed(preset.partition("@")[0]).root / rest)
    return spec


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
        self.print_fn(f"[study {self.done / self.total:4.0%} | {elapsed / 60:5.1f} min | {eta}] {what} ({state})")

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
    kl_samples: list[Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)


def _load(path: str, trust_remote_code: bool = False) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)


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
                          ctx.kl_samples))
        del model
        result = unit.load()  # exactly what a rerun will read back
    ctx.progress.end(1.0, cached)
    return result


def _row(ctx: Context, row_id: str, label: str, kind: str, m: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A results row: means, differences from the base and their paired bootstrap intervals."""
    base = ctx.measurements.get("base", m)
    boot = ctx.cfg.eval.bootstrap
    row = {
        "id": row_id,
        "label": label,
        "kind": kind,
        "general_nats_per_token": nats_per_token(m),
        "general_bits_per_byte": sum(m["general_nats"]) / math.log(2) / m["general_bytes"],
        "domain_accuracy": accuracy(m),
        "domain_n": len(m["domain_correct"]),
        "forgetting": nats_per_token(m) - nats_per_token(base),
        "forgetting_ci": list(paired_interval(m, base, "forgetting", boot)),
        "gain": accuracy(m) - accuracy(base),
        "gain_ci": list(paired_interval(m, base, "gain", boot)),
        "examples": m.get("examples", [])[:2],
        **extra,
    }
    if m.get("kl_nll") and base.get("kl_nll"):
        from forgetless.replay.kl_estimate import estimate_from_nll

        kl = estimate_from_nll(torch.tensor(m["kl_nll"]), torch.tensor(base["kl_nll"]),
                               torch.tensor([len(s.token_ids) for s in ctx.kl_samples or []]))
        row["kl_estimate"], row["kl_ci"] = kl.kl, [kl.ci_low, kl.ci_high]
    ctx.measurements[row_id] = m
    ctx.rows.append(row)
    return row


def train_spec(probe: TrainConfig, base_path: str) -> dict[str, Any]:
    """What determines a trained model: its config, the base and the data (the key of its cell)."""
    spec = {
        "train": probe.model_dump(exclude={"output", "overwrite", "keep_checkpoints", "save_dtype"}),
        "base": model_fingerprint(base_path),
        "data": data_hash(probe.data if not probe.data.startswith("testbed:") else resolve_data(probe.data)),
    }
    saved = resolve_save_dtype(probe.save_dtype, base_path)
    if saved != torch.float32:  # fp32 is what every run wrote before save_dtype: those cells stay valid
        spec["save_dtype"] = short_name(saved)
    return spec


def _train(ctx: Context, method: MethodConfig, lr: float, seed: int, data: str | None = None) -> tuple[Cell, str]:
    """Train one model in its cell (resuming if a previous attempt was killed); return its directory.

    ``data`` replaces the study's training data (peer domains of LM-Cocktail).
    """
    probe = ctx.cfg.train_config(method, lr, seed, "unused")
    if data is not None:
        probe = probe.model_copy(update={"data": data})
    unit = cell(ctx.root / "cells", "train", train_spec(probe, ctx.base_path))
    label = f"{method.name} lr={lr:g} seed={seed}"
    cached = unit.done()
    ctx.progress.begin(f"train {label}", 6.0, cached)
    if not cached:
        model_dir = unit.dir / "model"
        if not (model_dir / "forgetless.json").is_file():  # else: killed after the model was written
            cfg = ctx.cfg.train_config(method, lr, seed, str(model_dir))
            train(cfg.model_copy(update={"model": ctx.base_path, "data": resolve_data(data or cfg.data)}))
        record = json.loads((model_dir / "forgetless.json").read_text())
        unit.save({"model": str(model_dir), "seconds": record["metrics"].get("wall_seconds")})
    ctx.progress.end(6.0, cached)
    return unit, str(unit.dir / "model")


def _context_free(ctx: Context, purpose: str, num_samples: int, temperature: float, seed: int) -> str:
    """Draw context-free samples from the base once (a cached cell); return the JSONL path.

    Uses ``forgetless generate`` itself, so the file and its sidecar are what a user gets.
    """
    from forgetless.replay.cli import add_generate_parser

    cf = ctx.cfg.context_free
    spec = {"base": model_fingerprint(ctx.base_path), "purpose": purpose, "n": num_samples,
            "max_new_tokens": cf.max_new_tokens, "temperature": temperature, "seed": seed}
    unit = cell(ctx.root / "cells", "samples", spec)
    out = unit.dir / "samples.jsonl"
    cached = unit.done()
    ctx.progress.begin(f"draw {num_samples} context-free samples from the base ({purpose})", 1.0, cached)
    if not cached:
        import argparse

        parser = argparse.ArgumentParser()
        add_generate_parser(parser.add_subparsers())
        args = parser.parse_args(["generate", "--model", ctx.base_path, "--output", str(out),
                                  "--num-samples", str(num_samples), "--max-new-tokens", str(cf.max_new_tokens),
                                  "--temperature", str(temperature), "--seed", str(seed)])
        args.func(args)
        unit.save({"samples": str(out)})
    ctx.progress.end(1.0, cached)
    return str(out)


def _with_replay_file(ctx: Context, method: MethodConfig) -> MethodConfig:
    """Replace ``context-free`` in ``replay.data`` or ``regularizers.kl.data`` by the study's samples file."""
    train = dict(method.train)
    replay = train.get("replay")
    kl = (train.get("regularizers") or {}).get("kl") or {}
    replay_data = replay if isinstance(replay, str) else (replay or {}).get("data")
    if "context-free" not in (replay_data, kl.get("data")):
        return method
    cf = ctx.cfg.context_free
    path = _context_free(ctx, "replay", cf.replay_samples, cf.temperature, seed=0)
    if replay_data == "context-free":
        train["replay"] = {"data": path} if isinstance(replay, str) else {**replay, "data": path}
    if kl.get("data") == "context-free":
        train["regularizers"] = {**train["regularizers"], "kl": {**kl, "data": path}}
    return method.model_copy(update={"train": train})


def majority_baseline(test: str, limit: int | None) -> dict[str, Any]:
    """The score of always giving the test set's most frequent answer: the floor a real gain must clear.

    A model that only learns the answer format and its prior reaches this without
    computing anything, so the report states it next to every gain.
    """
    from collections import Counter

    from forgetless.data.records import read_records
    from forgetless.evaluation.domain import gold_answer

    golds = [gold_answer(r.fields, test, r.where) for r in read_records(test)[:limit]]
    answer, count = Counter(golds).most_common(1)[0]
    return {"majority_answer": answer, "majority_accuracy": count / len(golds)}


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
        total += len(cfg.cocktail.peers) * 6.0 + 1.0
    return total


def run_study(cfg: StudyConfig, print_fn: Callable[[str], None] = print) -> Path:
    """Run (or resume) a whole study and write its results and report.

    Returns:
        The study directory, holding ``results.jsonl``, ``report.md`` and ``report.html``.
    """
    from forgetless.study.report import write_report

    root = Path(cfg.output)
    root.mkdir(parents=True, exist_ok=True)
    base_path = resolve_model(cfg.base_model)
    tokenizer = load_tokenizer(base_path)
    general = resolve_data(cfg.data.general)
    test = resolve_data(cfg.data.test)
    texts = read_texts(general)[: cfg.eval.general_limit]
    ctx = Context(
        cfg=cfg, root=root, base_path=base_path, tokenizer=tokenizer, general_texts=texts, test_path=test,
        eval_spec={"general": data_hash(general), "general_limit": cfg.eval.general_limit,
                   "test": data_hash(test), "domain_limit": cfg.eval.domain_limit},
        progress=Progress(_stage_weights(cfg), print_fn),
    )
    if cfg.context_free.kl_samples:
        from forgetless.replay.kl_estimate import load_samples

        held_out = _context_free(ctx, "kl-estimate", cfg.context_free.kl_samples, 1.0, seed=10_000)
        ctx.kl_samples = load_samples(held_out)
        ctx.eval_spec["kl_samples"] = data_hash(held_out)
    base_spec = {"model": model_fingerprint(base_path)}
    _row(ctx, "base", "base", "base", _evaluate(ctx, base_spec, "base", lambda: _load(base_path)),
         **majority_baseline(test, cfg.eval.domain_limit))

    trained: list[tuple[str, str, MethodConfig, float, int]] = []
    for method in cfg.methods:
        for lr in method.learning_rates:
            for seed in cfg.seeds:
                unit, path = _train(ctx, _with_replay_file(ctx, method), lr, seed)
                row_id = f"{method.name}/lr={lr:g}/seed={seed}"
                label = f"{method.name} lr={lr:g}" + (f" s{seed}" if len(cfg.seeds) > 1 else "")
                m = _evaluate(ctx, {"model": unit.key}, label, lambda p=path: _load(p))
                _row(ctx, row_id, label, "trained", m, method=method.name, learning_rate=lr, seed=seed,
                     train_seconds=unit.load().get("seconds"), path=path, plain_sft=_plain_sft(method))
                trained.append((row_id, path, method, lr, seed))

    for row_id, path, method, lr, seed in trained:
        if cfg.sweeps.methods is not None and method.name not in cfg.sweeps.methods:
            continue
        _sweep(ctx, row_id, path, method, lr, seed)

    if cfg.cocktail and trained:
        from forgetless.study.cocktail import run_cocktail

        run_cocktail(ctx, trained)

    write_jsonl(root / "results.jsonl", ctx.rows)
    report = write_report(root, cfg)
    print_fn(f"study finished in {(time.time() - ctx.progress.start) / 60:.1f} min; report: {report}")
    return root


def _sweep(ctx: Context, row_id: str, path: str, method: MethodConfig, lr: float, seed: int) -> None:
    """The WiSE-FT interpolation curve and the output ensemble of one fine-tuned model with the base."""
    from forgetless.merging.ensemble import OutputEnsemble
    from forgetless.merging.sweep import Interpolator

    fingerprint = model_fingerprint(path)
    holder: dict[str, Interpolator] = {}

    def interpolated(alpha: float) -> torch.nn.Module:
        # Loaded only when a point is not cached: θ_α is written into one model in memory.
        if "interp" not in holder:
            holder["interp"] = Interpolator(_load(path), ctx.base_path, path)
        holder["interp"].set_alpha(alpha)
        return holder["interp"].model

    name = row_id.split("/")[0]
    for alpha in ctx.cfg.sweeps.interpolation:
        m = _evaluate(ctx, {"interpolate": fingerprint, "base": model_fingerprint(ctx.base_path), "alpha": alpha},
                      f"{name} lr={lr:g} WiSE-FT a={alpha:g}", lambda a=alpha: interpolated(a))
        _row(ctx, f"{row_id}/interp={alpha:g}", f"{name} lr={lr:g} a={alpha:g}", "interpolation", m,
             method=method.name, learning_rate=lr, seed=seed, alpha=alpha, parent=row_id)
    for alpha in ctx.cfg.sweeps.ensemble:
        m = _evaluate(ctx, {"ensemble": fingerprint, "base": model_fingerprint(ctx.base_path), "alpha": alpha},
                      f"{name} lr={lr:g} ensemble a={alpha:g}",
                      lambda a=alpha: OutputEnsemble(_load(ctx.base_path), _load(path), a))
        _row(ctx, f"{row_id}/ensemble={alpha:g}", f"{name} lr={lr:g} ens a={alpha:g}", "ensemble", m,
             method=method.name, learning_rate=lr, seed=seed, alpha=alpha, parent=row_id)
