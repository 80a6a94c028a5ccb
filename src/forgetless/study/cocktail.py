"""The study's LM-Cocktail stage: train peer-domain models, weigh them, and sweep α like WiSE-FT.

LM-Cocktail (Xiao et al., arXiv 2311.13534) in the paper's form: the base and the peers
are weighted by w = softmax(−L/T) of their loss on a few target-domain examples, and
the fine-tuned model enters only through α:

    θ_α = α θ_ft + (1 − α) Σ_i w_i θ_i

The weighted mix Σ_i w_i θ_i is written once (a cached cell); every α of the WiSE-FT
grid (``sweeps.interpolation``) is then set in memory by the same interpolator as
WiSE-FT, with the mix in the base's place, and gives one ``cocktail`` row. With peers,
α = 0 (the mix alone: the paper's "without fine-tuning") is a row too; without peers
the mix *is* the base and the curve coincides with WiSE-FT's (and reuses its cells).
The report and the plots draw the cocktail's α curve beside WiSE-FT's, so a reader can
judge the claim "general ability restored at near-equal target score" at matched α and
domain score (the seed-claims table judges it on the first cocktail row only; see
``forgetless.study.claims``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from forgetless.study.cells import Cell, cell, model_fingerprint
from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.rows import RowKind

Row = dict[str, Any]
# The α of the headline table: `forgetless merge --rule cocktail`'s default, the midpoint
# between the fine-tuned model and the mix (the whole curve is in the LM-Cocktail section).
HEADLINE_ALPHA = 0.5


def cocktail_alphas(cfg: StudyConfig) -> list[float]:
    """The α of each cocktail row: the WiSE-FT grid, plus 0 (the mix alone) when there are peers."""
    assert cfg.cocktail is not None
    return sorted(set(cfg.sweeps.interpolation) | ({0.0} if cfg.cocktail.peers else set()))


def cocktail_stage_weight(cfg: StudyConfig) -> float:
    """Progress weight of the stage: peers train (6 each), the mix (1), one evaluation per α."""
    return 0.0 if cfg.cocktail is None else len(cfg.cocktail.peers) * 6.0 + 1.0 + len(cocktail_alphas(cfg))


def _mix_cell(ctx: Any, paths: list[str], examples: str) -> Cell:
    """The cell of the weighted mix of these models (whether or not it has run)."""
    from forgetless.data import data_hash

    settings = ctx.cfg.cocktail.model_dump(exclude={"peers", "method", "num_examples"})
    # The count keeps its old key name, so mixes made before the rename stay cached. That name
    # also overwrites the examples' data hash below: an edited validation file reuses a finished mix.
    settings["examples"] = ctx.cfg.cocktail.num_examples
    spec = {"models": [model_fingerprint(p) for p in paths], "examples": data_hash(examples), **settings}
    return cell(ctx.root / "cells", "cocktail", spec)


def _mix(ctx: Any, names: list[str], paths: list[str], examples: str) -> tuple[str, dict[str, Any]]:
    """The weighted mix Σ_i w_i θ_i (α = 0) in its cell; returns its directory and the weights record.

    When a single model carries all the weight (no peers), the mix is that model's own directory,
    so the α curve's evaluation cells are WiSE-FT's.
    """
    from forgetless.merging.base import RuleContext
    from forgetless.merging.engine import merge_checkpoints
    from forgetless.merging.registry import build_rule

    cfg = ctx.cfg.cocktail
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


def cocktail_parent(cfg: StudyConfig) -> tuple[MethodConfig, float, int]:
    """The fine-tuned model the cocktail starts from: its method's first learning rate and the first seed."""
    assert cfg.cocktail is not None
    wanted = cfg.cocktail.method or cfg.methods[0].name
    method = next(m for m in cfg.methods if m.name == wanted)
    return method, method.learning_rates[0], cfg.seeds[0]


def peer_method(peer: Any) -> MethodConfig:
    """The study method that trains one peer domain's model."""
    return MethodConfig(name=f"peer-{peer.name}", learning_rates=[peer.learning_rate])


def train_peer(ctx: Any, peer: Any) -> str:
    """Train one peer domain's model in its cell (cached); returns its directory."""
    from forgetless.study.runner import _train

    return _train(ctx, peer_method(peer), peer.learning_rate, ctx.cfg.seeds[0], data=peer.data)[1]


def _inputs(ctx: Any) -> tuple[list[str], list[str], str]:
    """The models of the mix (base, fine-tuned, peers: names and directories) and the target examples."""
    from forgetless.study.runner import trained_path, trained_row_id
    from forgetless.testbed.specs import resolve_spec

    method, lr, seed = cocktail_parent(ctx.cfg)
    peers = [(peer.name, trained_path(ctx, peer_method(peer), peer.learning_rate, ctx.cfg.seeds[0], peer.data))
             for peer in ctx.cfg.cocktail.peers]
    # Target examples come from the validation set (given, or carved from train and never
    # trained on): the weights are a choice, and every choice is made on validation.
    examples = ctx.validation_path or resolve_spec(ctx.cfg.data.train)
    names = ["base", trained_row_id(method, lr, seed), *(name for name, _ in peers)]
    paths = [ctx.base_path, trained_path(ctx, method, lr, seed), *(path for _, path in peers)]
    return names, paths, examples


def cocktail_mix(ctx: Any) -> tuple[str, dict[str, Any]]:
    """The weighted mix of the base and the peers in its cell (the peers and the fine-tuned model must exist)."""
    return _mix(ctx, *_inputs(ctx))


def cocktail_point(ctx: Any, alpha: float, holder: dict[str, Any]) -> dict[str, Any]:
    """Measure θ_α = α θ_ft + (1 − α) θ_mix in its cell.

    The cell spec is a WiSE-FT point's, with the mix in the base's place.

    ``holder`` keeps the interpolator across the α of one curve.
    """
    from forgetless.merging.sweep import Interpolator
    from forgetless.study.runner import _evaluate, _load

    method, lr, _ = cocktail_parent(ctx.cfg)
    _, paths, examples = _inputs(ctx)
    ft_path = paths[1]
    unit = _mix_cell(ctx, paths, examples)
    mix = unit.load()["mix"] if unit.done() else cocktail_mix(ctx)[0]  # finished: no second progress line

    def mixed() -> torch.nn.Module:
        # Loaded only when a point is not cached: θ_α = (1 − α) θ_mix + α θ_ft written into one model.
        if "interp" not in holder:
            holder["interp"] = Interpolator(_load(ft_path), mix, ft_path)
        holder["interp"].set_alpha(alpha)
        return holder["interp"].model

    return _evaluate(ctx, {"interpolate": model_fingerprint(ft_path), "base": model_fingerprint(mix), "alpha": alpha},
                     f"LM-Cocktail {method.name} lr={lr:g} a={alpha:g}", mixed)


def run_cocktail(ctx: Any, trained: list[tuple[str, str, MethodConfig, float, int]]) -> None:
    """Train the configured peers (cached cells), weigh them with the base, and add one ``cocktail`` row per α."""
    from forgetless.study.runner import _row, trained_row_id

    cfg = ctx.cfg.cocktail
    method, lr, seed = cocktail_parent(ctx.cfg)
    row_id = trained_row_id(method, lr, seed)
    peers = [(peer.name, train_peer(ctx, peer)) for peer in cfg.peers]
    names, _, _ = _inputs(ctx)
    _, record = cocktail_mix(ctx)
    candidates = record["candidates"]
    weights = {names[k]: record["cocktail_weights"][k] for k in candidates}
    losses = {names[k]: record["losses"][k] for k in candidates if record["losses"][k] is not None}
    holder: dict[str, Any] = {}
    for alpha in cocktail_alphas(ctx.cfg):
        m = cocktail_point(ctx, alpha, holder)
        coefficients = [(1 - alpha) * c for c in record["mix_coefficients"]]
        coefficients[1] += alpha
        _row(ctx, f"cocktail/{row_id}/alpha={alpha:g}", f"cocktail {method.name} lr={lr:g} a={alpha:g}",
             RowKind.COCKTAIL, m, method=method.name, learning_rate=lr, seed=seed, alpha=alpha, parent=row_id,
             peers=[name for name, _ in peers], candidates=cfg.candidates, loss=cfg.loss,
             temperature=cfg.temperature, weights=weights, losses=losses,
             coefficients=dict(zip(names, coefficients)))


def cocktail_curve(rows: list[Row], base: Row, parent: Row) -> list[Row]:
    """One parent's cocktail rows by α, from α = 0 (the mix; the base when there is no α = 0 row)
    to α = 1 (the fine-tuned model itself); empty when the parent has no cocktail rows."""
    inner = sorted((r for r in rows if r.get("parent") == parent["id"] and r["kind"] == "cocktail"),
                   key=lambda r: r["alpha"])
    if not inner:
        return []
    start = [] if inner[0]["alpha"] == 0 else [{**base, "alpha": 0.0}]
    return [*start, *inner, {**parent, "alpha": 1.0}]


def headline_cocktails(rows: list[Row]) -> list[Row]:
    """Per cocktail sweep, the row whose α is nearest ``HEADLINE_ALPHA``: the one the headline table shows."""
    picked: dict[str, Row] = {}
    for r in rows:
        if r["kind"] == "cocktail" and r["alpha"] > 0:
            best = picked.get(r["parent"])
            if best is None or abs(r["alpha"] - HEADLINE_ALPHA) < abs(best["alpha"] - HEADLINE_ALPHA):
                picked[r["parent"]] = r
    return list(picked.values())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _wise_ft(rows: list[Row], base: Row, parent: Row) -> dict[float, Row]:
    points = {r["alpha"]: r for r in rows if r.get("parent") == parent["id"] and r["kind"] == "interpolation"}
    return {0.0: base, **points, 1.0: parent}


def cocktail_sections(rows: list[Row]) -> list[tuple[str, str, str | None]]:
    """The report's LM-Cocktail section: weights, then the α curve beside WiSE-FT's at the same α."""
    base = next((r for r in rows if r["kind"] == "base"), None)
    parents = [r for r in rows if r["kind"] == "trained" and any(
        x["kind"] == "cocktail" and x.get("parent") == r["id"] for x in rows)]
    if base is None or not parents:
        return []
    parts = []
    for parent in parents:
        curve = cocktail_curve(rows, base, parent)
        first = curve[1] if curve[0]["kind"] != "cocktail" else curve[0]
        weights = ", ".join(f"{k} {v:.3f}" for k, v in first.get("weights", {}).items())
        losses = ", ".join(f"{k} {v:.3f}" for k, v in first.get("losses", {}).items())
        inside = "every model, the fine-tuned one too (a variant)" if first.get("candidates") == "all" \
            else "the base and the peers"
        text = (f"`{parent['label']}` with {_count(len(first.get('peers', [])), 'peer')}: theta = alpha theta_ft + "
                f"(1 - alpha) sum_i w_i theta_i, w = softmax(-L/T) over {inside}, T = {first.get('temperature', 5):g}: "
                f"weights {weights}" + (f" (losses on the target examples, {first.get('loss', 'tokens')} "
                                        f"convention: {losses})" if losses else "") + ".")
        wise = _wise_ft(rows, base, parent)
        table = [["alpha", "cocktail domain EM", "cocktail forgetting", "WiSE-FT domain EM", "WiSE-FT forgetting"]]
        for point in curve:
            other = wise.get(point["alpha"])
            table.append([f"{point['alpha']:g}", f"{point['domain_accuracy']:.1%}", f"{point['forgetting']:+.3f}",
                          f"{other['domain_accuracy']:.1%}" if other else "-",
                          f"{other['forgetting']:+.3f}" if other else "-"])
        head, *body = table
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]
        parts.append(text + "\n\n" + "\n".join(lines))
    note = ("\n\nAlpha 1 is the fine-tuned model for both; alpha 0 is the base for WiSE-FT and the weighted mix of "
            "the base and the peers for LM-Cocktail (no fine-tuned model). Forgetting in nats/token against the base.")
    # The alpha-curves figure (both curves) is shown with the WiSE-FT section when there is one.
    image = None if any(r["kind"] == "interpolation" for r in rows) else "alpha_curves.png"
    return [("LM-Cocktail", "\n\n".join(parts) + note, image)]
