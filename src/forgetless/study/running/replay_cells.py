"""The study's sample cells: replay data its methods train on, and the KL estimate's held-out samples.

Each set of samples is made once, in a cell keyed by what determines it (the base,
the prompts or the corpus, the count, temperature and seed), by the very function
``forgetless generate`` calls, so the file and its sidecar are what a user gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetless.training.config import TrainConfig
from forgetless.data import data_hash
from forgetless.replay.kl_estimate import load_samples
from forgetless.replay.make_data import generate_replay_data
from forgetless.study.running.cells import Cell, cell, model_fingerprint
from forgetless.study.config import MethodConfig
from forgetless.study.running.context import Context, resolve_data

REPLAY_SOURCES = ("context-free", "contextual", "corpus")


def samples_cell(ctx: Context, kind: str, purpose: str, num_samples: int, temperature: float, seed: int) -> Cell:
    """The cell of one set of replay (or KL-estimate) samples of ``kind`` (whether or not it was made)."""
    cf = ctx.cfg.context_free
    if kind == "context-free":
        fingerprint: dict[str, Any] = {"base": model_fingerprint(ctx.base_path)}
    elif kind == "contextual":
        fingerprint = {"base": model_fingerprint(ctx.base_path), "prompts": data_hash(contextual_prompts(ctx))}
    else:
        fingerprint = {"corpus": data_hash(replay_corpus(ctx))}
    # Context-free cells keep the key they had before the other kinds existed.
    spec = {**fingerprint, "purpose": purpose, "n": num_samples, "max_new_tokens": cf.max_new_tokens,
            "temperature": temperature, "seed": seed, **({"kind": kind} if kind != "context-free" else {})}
    return cell(ctx.root / "cells", "samples", spec)


def contextual_prompts(ctx: Context) -> str:
    """The prompts contextual replay completes: the data the models train on."""
    return ctx.train_data or resolve_data(ctx.cfg.data.train)


def make_samples(ctx: Context, kind: str, purpose: str, num_samples: int, temperature: float, seed: int) -> str:
    """Make replay data of one ``kind`` once (a cached cell); return the JSONL path.

    ``context-free``: sequences sampled from the base with no context;
    ``contextual``: the base's completions of training prompts; ``corpus``: pieces
    of the configured general corpus. Made by ``forgetless generate``'s own function.
    """

    cf = ctx.cfg.context_free
    unit = samples_cell(ctx, kind, purpose, num_samples, temperature, seed)
    out = unit.dir / "samples.jsonl"
    cached = unit.done()
    ctx.progress.begin(f"make {num_samples} {kind} replay samples ({purpose})", 1.0, cached)
    if not cached:
        if kind == "context-free":
            source: dict[str, str] = {"model": ctx.base_path}
        elif kind == "contextual":
            source = {"model": ctx.base_path, "prompts": contextual_prompts(ctx)}
        else:
            source = {"corpus": replay_corpus(ctx)}
        generate_replay_data(str(out), **source, num_samples=num_samples, max_new_tokens=cf.max_new_tokens,
                             temperature=temperature, seed=seed)
        unit.save({"samples": str(out)})
    ctx.progress.end(1.0, cached)
    return str(out)


def replay_corpus(ctx: Context) -> str:
    """The general text that corpus replay slices: configured, and never the held-out set."""
    cf = ctx.cfg.context_free
    if cf.replay_corpus is None:
        raise ValueError("context_free.replay_corpus: missing; `replay.data: corpus` needs general text to slice "
                         "(e.g. testbed:tiny/general/pretrain.jsonl)")
    corpus = resolve_data(cf.replay_corpus)
    if Path(corpus).resolve() == Path(resolve_data(ctx.cfg.data.general)).resolve():
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
    unit = samples_cell(ctx, kind, "replay", cf.replay_samples, cf.temperature, seed=0)
    # Made once; later methods read the finished cell without a progress line of their own.
    if unit.done():
        return str(unit.dir / "samples.jsonl")
    return make_samples(ctx, kind, "replay", cf.replay_samples, cf.temperature, seed=0)


def attach_kl_samples(ctx: Context, draw: bool = True) -> None:
    """Give ``ctx`` the held-out samples of the KL estimate (drawn once, a cached cell), if the study uses them.

    With ``draw`` False the samples are attached only when their cell has finished
    (a worker building its context must not draw them a second time).
    """
    n = ctx.cfg.context_free.kl_samples
    if not n or ctx.kl_samples is not None:
        return
    if not draw and not samples_cell(ctx, "context-free", "kl-estimate", n, 1.0, seed=10_000).done():
        return

    held_out = make_samples(ctx, "context-free", "kl-estimate", n, 1.0, seed=10_000)
    ctx.kl_samples = load_samples(held_out)
    ctx.eval_spec["kl_samples"] = data_hash(held_out)


def with_replay_file(ctx: Context, method: MethodConfig) -> MethodConfig:
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


def without_kl_log(cfg: TrainConfig) -> TrainConfig:
    """The run a study trains for ``cfg``: its replay KL log off, unless the method sets ``kl_eval_*`` itself.

    The log (``forgetless.replay.kl_callback``) draws ``kl_eval_samples`` fresh samples of the base before the
    first step (64 of up to 128 tokens by default) and scores them under the base and then the model every
    ``kl_eval_steps`` steps and at the end. A study reads none of it: every evaluation cell measures the same
    estimate of KL(p_base || p_model) on the study's own held-out samples (``context_free.kl_samples``). On
    configs/real.yaml the log was about 186 s of the context-free replay cell's 502 (the draw and the base's
    scoring before the first step, 104 s; two scorings in the loop, 41 s each). It never changes the weights (the Trainer reseeds before training), so the cell keeps the key
    of the method as configured: cells trained before stay valid and a rerun trains the same model.
    """
    replay = cfg.replay
    if replay is None or replay.kl_eval_data is not None or replay.model_fields_set & {
            "kl_eval_samples", "kl_eval_max_new_tokens", "kl_eval_steps"}:
        return cfg
    return cfg.model_copy(update={"replay": replay.model_copy(update={"kl_eval_samples": 0})})
