"""The LM-Cocktail stage: train peer-domain models, weigh them, and sweep α like WiSE-FT.

LM-Cocktail (Xiao et al., arXiv 2311.13534) in the paper's form: the base and the peers
are weighted by w = softmax(−L/T) of their loss on a few target-domain examples, and
the fine-tuned model enters only through α:

    θ_α = α θ_ft + (1 − α) Σ_i w_i θ_i

The weighted mix Σ_i w_i θ_i is written once (a cached cell); every α of the WiSE-FT
grid (``sweeps.interpolation``) is then set in memory by the same interpolator as
WiSE-FT, with the mix in the base's place, and gives one ``cocktail`` row. With peers,
α = 0 (the mix alone: the paper's "without fine-tuning") is a row too; without peers
the mix *is* the base and the curve coincides with WiSE-FT's (and reuses its cells).
The report (``forgetless.study.reporting.cocktail_curves``) and the plots draw the cocktail's α curve
beside WiSE-FT's, so the claim "general ability restored at near-equal target score"
is judged at matched α and domain score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from forgetless.data import data_hash
from forgetless.study.running.cells import Cell, cell, model_fingerprint
from forgetless.study.config import MethodConfig, PeerConfig, StudyConfig
from forgetless.study.running.context import Context, resolve_data
from forgetless.study.running.graph import Graph, Work
from forgetless.study.running.model_cells import (diverged, eval_task_id, eval_work, evaluate, make_row, train_cell,
                                                  train_model, train_task_id, train_work, trained_path, trained_row_id)
from forgetless.merging.base import RuleContext
from forgetless.merging.engine import merge_checkpoints
from forgetless.merging.registry import build_rule
from forgetless.merging.sweep import Interpolator
from forgetless.study.rows import Row, RowKind
from forgetless.study.running.stages import Planned
from forgetless.study.running.tasks import ContextSpec, context_for, holder, spec_of


def cocktail_alphas(cfg: StudyConfig) -> list[float]:
    """The α of each cocktail row: the WiSE-FT grid, plus 0 (the mix alone) when there are peers."""
    assert cfg.cocktail is not None
    return sorted(set(cfg.sweeps.interpolation) | ({0.0} if cfg.cocktail.peers else set()))


def cocktail_parent(cfg: StudyConfig) -> tuple[MethodConfig, float, int]:
    """The fine-tuned model the cocktail starts from: its method's first learning rate and the first seed."""
    assert cfg.cocktail is not None
    wanted = cfg.cocktail.method or cfg.methods[0].name
    method = next(m for m in cfg.methods if m.name == wanted)
    return method, method.learning_rates[0], cfg.seeds[0]


def peer_method(peer: PeerConfig) -> MethodConfig:
    """The study method that trains one peer domain's model."""
    return MethodConfig(name=f"peer-{peer.name}", learning_rates=[peer.learning_rate])


def train_peer(ctx: Context, peer: PeerConfig) -> str:
    """Train one peer domain's model in its cell (cached); returns its directory."""
    return train_model(ctx, peer_method(peer), peer.learning_rate, ctx.cfg.seeds[0], data=peer.data)[1]


def _inputs(ctx: Context) -> tuple[list[str], list[str], str]:
    """The models of the mix (base, fine-tuned, peers: names and directories) and the target examples."""
    assert ctx.cfg.cocktail is not None
    method, lr, seed = cocktail_parent(ctx.cfg)
    peers = [(peer.name, trained_path(ctx, peer_method(peer), peer.learning_rate, ctx.cfg.seeds[0], peer.data))
             for peer in ctx.cfg.cocktail.peers]
    # Target examples come from the validation set (given, or carved from train and never
    # trained on): the weights are a choice, and every choice is made on validation.
    examples = ctx.validation_path or resolve_data(ctx.cfg.data.train)
    names = ["base", trained_row_id(method, lr, seed), *(name for name, _ in peers)]
    paths = [ctx.base_path, trained_path(ctx, method, lr, seed), *(path for _, path in peers)]
    return names, paths, examples


def _mix_cell(ctx: Context, paths: list[str], examples: str) -> Cell:
    """The cell of the weighted mix of these models (whether or not it has run)."""
    assert ctx.cfg.cocktail is not None
    # The count is keyed as num_examples and the examples file by its content, so editing the
    # validation set makes a new mix (the count once shared the key "examples" and hid the file).
    spec = {"models": [model_fingerprint(p) for p in paths], "examples": data_hash(examples),
            **ctx.cfg.cocktail.model_dump(exclude={"peers", "method"})}
    return cell(ctx.root / "cells", "cocktail", spec)


def cocktail_mix(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The weighted mix Σ_i w_i θ_i (α = 0) of the base and the peers in its cell (the peers and the
    fine-tuned model must exist); returns its directory and the weights record.

    When a single model carries all the weight (no peers), the mix is that model's own directory,
    so the α curve's evaluation cells are WiSE-FT's.
    """

    cfg = ctx.cfg.cocktail
    assert cfg is not None
    names, paths, examples = _inputs(ctx)
    unit = _mix_cell(ctx, paths, examples)
    cached = unit.done()
    ctx.progress.begin(f"LM-Cocktail weights over {', '.join(names)}", 1.0, cached)
    if not cached:
        # The mix alone (α = 0), through the registry like `forgetless merge --rule cocktail`.
        rule = build_rule("cocktail", {"examples": str(examples), "finetuned": 1, "temperature": cfg.temperature,
                                       "alpha": 0.0, "num_examples": cfg.num_examples, "candidates": cfg.candidates,
                                       "cocktail_loss": cfg.loss}, RuleContext(paths))
        result = rule.coefficients([Path(p) for p in paths])
        used = [k for k, c in enumerate(result.values) if c != 0]
        single = len(used) == 1 and result.values[used[0]] == 1.0
        mix = paths[used[0]] if single else str(unit.dir / "mix")
        if not single:
            merge_checkpoints(paths, result.values, mix, config_from=1, overwrite=True,
                              record={"rule": "cocktail", "alpha": 0.0, **result.info}, progress=False)
        unit.save({"names": names, "mix": mix, "mix_coefficients": result.values, **result.info})
    ctx.progress.end(1.0, cached)
    record = unit.load()
    return record["mix"], record


def cocktail_point(ctx: Context, alpha: float, kept: dict[str, Any]) -> dict[str, Any]:
    """Measure θ_α = α θ_ft + (1 − α) θ_mix in its cell.

    The cell spec is a WiSE-FT point's, with the mix in the base's place.

    ``kept`` keeps the interpolator across the α of one curve.
    """

    method, lr, _ = cocktail_parent(ctx.cfg)
    _, paths, examples = _inputs(ctx)
    ft_path = paths[1]
    unit = _mix_cell(ctx, paths, examples)
    mix = unit.load()["mix"] if unit.done() else cocktail_mix(ctx)[0]  # finished: no second progress line

    def mixed() -> torch.nn.Module:
        # Loaded only when a point is not cached: θ_α = (1 − α) θ_mix + α θ_ft written into one model.
        if "interp" not in kept:
            kept["interp"] = Interpolator(ctx.load_model(ft_path), mix, ft_path)
        kept["interp"].set_alpha(alpha)
        return kept["interp"].model

    return evaluate(ctx, {"interpolate": model_fingerprint(ft_path), "base": model_fingerprint(mix), "alpha": alpha},
                    f"LM-Cocktail {method.name} lr={lr:g} a={alpha:g}", mixed)


def peer_train_task(spec: ContextSpec, index: int) -> None:
    """Train LM-Cocktail's ``index``-th peer domain model."""
    ctx = context_for(spec)
    assert ctx.cfg.cocktail is not None
    train_peer(ctx, ctx.cfg.cocktail.peers[index])


def diverged_inputs(ctx: Context) -> list[str]:
    """The fine-tuned model and peers of the mix whose training diverged (no model to mix)."""
    assert ctx.cfg.cocktail is not None
    method, lr, seed = cocktail_parent(ctx.cfg)
    runs = [(trained_row_id(method, lr, seed), train_cell(ctx, method, lr, seed)[0])]
    runs += [(f"peer {peer.name}", train_cell(ctx, peer_method(peer), peer.learning_rate, ctx.cfg.seeds[0],
                                              peer.data)[0]) for peer in ctx.cfg.cocktail.peers]
    return [name for name, unit in runs if diverged(unit)]


def cocktail_mix_task(spec: ContextSpec) -> None:
    """Weigh the base and the peers and write the mix."""
    ctx = context_for(spec)
    if not diverged_inputs(ctx):
        cocktail_mix(ctx)


def cocktail_point_task(spec: ContextSpec, alpha: float) -> None:
    """Evaluate one α of the cocktail curve."""
    ctx = context_for(spec)
    if not diverged_inputs(ctx):
        cocktail_point(ctx, alpha, holder("cocktail:" + spec.key))


class CocktailStage:
    """One ``cocktail`` row per α, when the study configures ``cocktail``."""

    name = "cocktail"

    def weight(self, cfg: StudyConfig) -> float:
        """Peers train (6 each), the mix (1), one evaluation per α."""
        return 0.0 if cfg.cocktail is None else len(cfg.cocktail.peers) * 6.0 + 1.0 + len(cocktail_alphas(cfg))

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        cfg, spec = ctx.cfg, spec_of(ctx)
        if cfg.cocktail is None or not cfg.methods:
            return []
        parent = trained_row_id(*cocktail_parent(cfg))
        peers = [graph.add(f"train/peer-{peer.name}", f"train peer {peer.name}", peer_train_task, (spec, k), gpu=True,
                           work=train_work(cfg, peer_method(peer), curve=False))
                 for k, peer in enumerate(cfg.cocktail.peers)]
        mix = graph.add(f"cocktail/{parent}/mix", f"LM-Cocktail weights for {parent}", cocktail_mix_task, (spec,),
                        [train_task_id(parent), *peers],
                        # a loss per model (the base, the parent, each peer) on a few examples
                        work=Work("cocktail", texts=(2 + len(cfg.cocktail.peers)) * 8))
        # After the parent's sweep points (every evaluation declared under its id): without peers the mix
        # is the base, and the cocktail's cells are WiSE-FT's, which two workers must not compute at once.
        sweeps = [t for ids in planned.by_stage.values() for t in ids if t.startswith(eval_task_id(parent) + "/")]
        points = [graph.add(f"cocktail/{parent}/alpha={alpha:g}", f"evaluate LM-Cocktail a={alpha:g}",
                            cocktail_point_task, (spec, alpha), [mix, *planned.before_eval, *sweeps],
                            work=eval_work(cfg, "cocktail"))
                  for alpha in cocktail_alphas(cfg)]
        return [*peers, mix, *points]

    def rows(self, ctx: Context) -> list[Row]:
        cfg = ctx.cfg.cocktail
        if cfg is None or not ctx.cfg.methods:
            return []
        method, lr, seed = cocktail_parent(ctx.cfg)
        row_id = trained_row_id(method, lr, seed)
        peers = [(peer.name, train_peer(ctx, peer)) for peer in cfg.peers]
        broken = diverged_inputs(ctx)
        if broken:  # the trained stage lists a diverged parent; a diverged peer is listed here
            ctx.diverged += [{"id": f"cocktail/{row_id}", "label": f"LM-Cocktail of {row_id}",
                              "message": f"its input {', '.join(broken)} diverged"}]
            return []
        names, _, _ = _inputs(ctx)
        _, record = cocktail_mix(ctx)
        candidates = record["candidates"]
        weights = {names[k]: record["cocktail_weights"][k] for k in candidates}
        losses = {names[k]: record["losses"][k] for k in candidates if record["losses"][k] is not None}
        kept: dict[str, Any] = {}
        rows = []
        for alpha in cocktail_alphas(ctx.cfg):
            m = cocktail_point(ctx, alpha, kept)
            coefficients = [(1 - alpha) * c for c in record["mix_coefficients"]]
            coefficients[1] += alpha
            rows.append(make_row(ctx, f"cocktail/{row_id}/alpha={alpha:g}", f"cocktail {method.name} lr={lr:g} "
                                 f"a={alpha:g}", RowKind.COCKTAIL, m, method=method.name, learning_rate=lr, seed=seed,
                                 alpha=alpha, parent=row_id, peers=[name for name, _ in peers],
                                 candidates=cfg.candidates, loss=cfg.loss, temperature=cfg.temperature,
                                 weights=weights, losses=losses, coefficients=dict(zip(names, coefficients))))
        return rows
