"""The study's cells as a graph of tasks, and the task functions a worker runs.

``plan_cells`` declares every cell of a study with its dependencies:

- the held-out samples of the KL estimate, then every evaluation (they need them);
- the base's evaluation;
- the replay samples, then the training of every method that replays them;
- each trained model's evaluation and each point of its sweeps (after its training);
- LM-Cocktail's peers, its mix (after the peers and its fine-tuned model) and its
  α points (after the mix and the fine-tuned model's WiSE-FT points, whose cells
  they reuse when the mix is the base).

A task receives a ``ContextSpec`` (paths and the config, picklable) and rebuilds
the study's ``Context`` once per process; in the driver process (the serial
executor) it finds the driver's own context, so a serial study prints its
progress exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetless.evaluation.report import read_texts
from forgetless.models import load_tokenizer
from forgetless.study import runner
from forgetless.study.cells import content_key
from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.graph import Graph
from forgetless.study.rows import RowKind

KL_SAMPLES, REPLAY_SAMPLES, BASE = "samples/kl-estimate", "samples/replay", "eval/base"


@dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to rebuild a study's context: the config and the resolved paths."""

    cfg: StudyConfig
    root: str
    base_path: str
    general_path: str
    test_path: str
    validation_path: str | None
    train_data: str | None
    eval_spec: dict[str, Any]

    @property
    def key(self) -> str:
        return content_key({"cfg": self.cfg.model_dump(), "root": self.root, "base": self.base_path,
                            "eval": {k: v for k, v in self.eval_spec.items() if k != "kl_samples"}})


class CellProgress(runner.Progress):
    """A worker's progress lines, in the cell's log: what it runs or reads back (the driver keeps the totals)."""

    def begin(self, what: str, weight: float, cached: bool) -> None:
        print(f"[cell] {what} ({'cached' if cached else 'running'})", flush=True)

    def end(self, weight: float, cached: bool) -> None:
        pass


_CONTEXTS: dict[str, runner.Context] = {}  # one per study per process: the tokenizer and texts load once
# The interpolator of the last sweep this process evaluated: consecutive points of one
# sweep (a serial run, or a worker that drew them) load the two models once.
_HOLDER: dict[str, Any] = {"key": None, "holder": {}}


def _holder(key: str) -> dict[str, Any]:
    if _HOLDER["key"] != key:
        _HOLDER["key"], _HOLDER["holder"] = key, {}
    return _HOLDER["holder"]


def spec_of(ctx: runner.Context) -> ContextSpec:
    """The picklable description of a prepared context."""
    assert ctx.general_path is not None
    return ContextSpec(ctx.cfg, str(ctx.root), ctx.base_path, ctx.general_path, ctx.test_path,
                       ctx.validation_path, ctx.train_data,
                       {k: v for k, v in ctx.eval_spec.items() if k != "kl_samples"})


def register_context(ctx: runner.Context) -> None:
    """Make tasks in this process run on ``ctx`` (the driver's, with its progress printer)."""
    _CONTEXTS[spec_of(ctx).key] = ctx


def context_for(spec: ContextSpec) -> runner.Context:
    """This process's context for the study of ``spec`` (built on first use; progress lines go to stdout,
    which a worker sends to the cell's log)."""
    ctx = _CONTEXTS.get(spec.key)
    if ctx is None:
        cfg = spec.cfg
        ctx = _CONTEXTS[spec.key] = runner.Context(
            cfg=cfg, root=Path(spec.root), base_path=spec.base_path, tokenizer=load_tokenizer(spec.base_path),
            general_texts=read_texts(spec.general_path)[: cfg.eval.general_limit], test_path=spec.test_path,
            eval_spec=dict(spec.eval_spec), progress=CellProgress(0.0), validation_path=spec.validation_path,
            train_data=spec.train_data, general_path=spec.general_path)
    runner.attach_kl_samples(ctx, draw=False)  # once their cell has finished (every evaluation waits for it)
    return ctx


def kl_samples_task(spec: ContextSpec) -> None:
    """Draw the held-out samples of the KL estimate."""
    runner.attach_kl_samples(context_for(spec))


def replay_samples_task(spec: ContextSpec, kind: str) -> None:
    """Make the replay samples of one source (context-free, contextual, corpus) that replay methods train on."""
    runner.replay_samples(context_for(spec), kind)


def base_eval_task(spec: ContextSpec) -> None:
    """Evaluate the base model."""
    ctx = context_for(spec)
    runner._evaluate(ctx, {"model": runner.model_fingerprint(ctx.base_path)}, "base",
                     lambda: runner._load(ctx.base_path))


def train_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int) -> None:
    """Train one model (resuming from its last checkpoint when a previous attempt was killed)."""
    ctx = context_for(spec)
    runner._train(ctx, runner._with_replay_file(ctx, method), lr, seed)


def trained_eval_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int) -> None:
    """Evaluate one trained model."""
    ctx = context_for(spec)
    unit, _ = runner._train_cell(ctx, runner._with_replay_file(ctx, method), lr, seed)
    path = str(unit.dir / "model")
    runner._evaluate(ctx, {"model": unit.key}, runner.trained_label(ctx.cfg, method, lr, seed),
                     lambda: runner._load(path))


def sweep_point_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int, kind: RowKind,
                     alpha: float) -> None:
    """Evaluate one WiSE-FT or ensemble point of one trained model."""
    ctx = context_for(spec)
    path = runner.trained_path(ctx, method, lr, seed)
    holder = _holder(f"sweep:{path}:{runner.model_fingerprint(path)}:{ctx.base_path}")
    runner.sweep_point(ctx, path, method.name, lr, kind, alpha, holder)


def peer_train_task(spec: ContextSpec, index: int) -> None:
    """Train LM-Cocktail's ``index``-th peer domain model."""
    from forgetless.study.cocktail import train_peer

    ctx = context_for(spec)
    assert ctx.cfg.cocktail is not None
    train_peer(ctx, ctx.cfg.cocktail.peers[index])


def cocktail_mix_task(spec: ContextSpec) -> None:
    """Weigh the base and the peers and write the mix."""
    from forgetless.study.cocktail import cocktail_mix

    cocktail_mix(context_for(spec))


def cocktail_point_task(spec: ContextSpec, alpha: float) -> None:
    """Evaluate one α of the cocktail curve."""
    from forgetless.study.cocktail import cocktail_point

    cocktail_point(context_for(spec), alpha, _holder("cocktail:" + spec.key))


def plan_cells(ctx: runner.Context) -> Graph:
    """Every cell of the study, with its dependencies, in the order a serial run takes them."""
    cfg, spec, graph = ctx.cfg, spec_of(ctx), Graph()
    kl = [graph.add(KL_SAMPLES, "draw the KL estimate's samples", kl_samples_task, (spec,))] \
        if cfg.context_free.kl_samples else []
    graph.add(BASE, "evaluate base", base_eval_task, (spec,), kl)
    replay: dict[str, str] = {}
    for kind in runner.REPLAY_SOURCES:
        if any(kind in runner.replay_sources(m) for m in cfg.methods):
            # The context-free task keeps its id from before the other sources existed.
            task = REPLAY_SAMPLES if kind == "context-free" else f"{REPLAY_SAMPLES}/{kind}"
            replay[kind] = graph.add(task, f"make the {kind} replay samples", replay_samples_task, (spec, kind))
    trained: list[tuple[MethodConfig, float, int, str]] = []
    for method in cfg.methods:
        for lr in method.learning_rates:
            for seed in cfg.seeds:
                row_id = runner.trained_row_id(method, lr, seed)
                label = f"{method.name} lr={lr:g} seed={seed}"
                train = graph.add(f"train/{row_id}", f"train {label}", train_task, (spec, method, lr, seed),
                                  [replay[kind] for kind in runner.replay_sources(method)], gpu=True)
                graph.add(f"eval/{row_id}", f"evaluate {label}", trained_eval_task, (spec, method, lr, seed),
                          [train, *kl])
                trained.append((method, lr, seed, train))
    sweeps: dict[str, list[str]] = {}
    for method, lr, seed, train in trained:
        if not runner.swept(cfg, method):
            continue
        row_id = runner.trained_row_id(method, lr, seed)
        points = [(RowKind.INTERPOLATION, a, "interp") for a in cfg.sweeps.interpolation] + \
                 [(RowKind.ENSEMBLE, a, "ensemble") for a in cfg.sweeps.ensemble]
        sweeps[row_id] = [graph.add(f"eval/{row_id}/{tag}={a:g}", f"evaluate {row_id} {tag} a={a:g}",
                                    sweep_point_task, (spec, method, lr, seed, kind, a), [train, *kl])
                          for kind, a, tag in points]
    if cfg.cocktail is not None and trained:
        _plan_cocktail(graph, cfg, spec, kl, sweeps)
    return graph


def _plan_cocktail(graph: Graph, cfg: StudyConfig, spec: ContextSpec, kl: list[str],
                   sweeps: dict[str, list[str]]) -> None:
    from forgetless.study.cocktail import cocktail_alphas, cocktail_parent

    assert cfg.cocktail is not None
    method, lr, seed = cocktail_parent(cfg)
    parent = runner.trained_row_id(method, lr, seed)
    peers = [graph.add(f"train/peer-{peer.name}", f"train peer {peer.name}", peer_train_task, (spec, k), gpu=True)
             for k, peer in enumerate(cfg.cocktail.peers)]
    mix = graph.add(f"cocktail/{parent}/mix", f"LM-Cocktail weights for {parent}", cocktail_mix_task, (spec,),
                    [f"train/{parent}", *peers])
    # After the WiSE-FT points: without peers the mix is the base, and the cocktail's cells are theirs.
    for alpha in cocktail_alphas(cfg):
        graph.add(f"cocktail/{parent}/alpha={alpha:g}", f"evaluate LM-Cocktail a={alpha:g}", cocktail_point_task,
                  (spec, alpha), [mix, *kl, *sweeps.get(parent, [])])
