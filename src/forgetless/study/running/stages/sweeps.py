"""The sweeps stage: each fine-tuned model mixed with the base, in weights (WiSE-FT) and in outputs.

WiSE-FT (Wortsman et al., arXiv 2109.01903): θ_α = (1 − α) θ_base + α θ_ft, one
``INTERPOLATION`` row per α of ``sweeps.interpolation``; the output ensemble mixes
the two models' next-token probabilities the same way, one ``ENSEMBLE`` row per α
of ``sweeps.ensemble``. ``sweeps.methods`` limits which methods' models are swept.
"""

from __future__ import annotations

from typing import Any

import torch

from forgetless.study.running.cells import model_fingerprint
from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.running.context import Context
from forgetless.study.running.graph import Graph
from forgetless.study.running.model_cells import (diverged, eval_task_id, eval_work, evaluate, make_row, train_cell,
                                                  train_task_id, trained_models, trained_path, trained_row_id)
from forgetless.merging.ensemble import OutputEnsemble
from forgetless.merging.sweep import Interpolator
from forgetless.study.rows import Row, RowKind, family_of
from forgetless.study.running.stages import Planned
from forgetless.study.running.tasks import ContextSpec, context_for, holder, spec_of

_TAGS = {RowKind.INTERPOLATION: "interp", RowKind.ENSEMBLE: "ensemble"}  # in row and task ids


def swept(cfg: StudyConfig, method: MethodConfig) -> bool:
    """Whether the WiSE-FT and ensemble sweeps cover this method's models."""
    return cfg.sweeps.methods is None or method.name in cfg.sweeps.methods


def _points(cfg: StudyConfig) -> list[tuple[RowKind, float]]:
    return [(RowKind.INTERPOLATION, a) for a in cfg.sweeps.interpolation] + \
           [(RowKind.ENSEMBLE, a) for a in cfg.sweeps.ensemble]


def sweep_point(ctx: Context, path: str, name: str, lr: float, kind: RowKind, alpha: float,
                kept: dict[str, Any]) -> dict[str, Any]:
    """Measure one point of a fine-tuned model's WiSE-FT (``INTERPOLATION``) or ``ENSEMBLE`` sweep (a cell).

    ``kept`` keeps the interpolator across the points of one sweep, so the two
    models are loaded once per sweep rather than once per point.
    """

    fingerprint, base = model_fingerprint(path), model_fingerprint(ctx.base_path)
    if kind == RowKind.ENSEMBLE:
        return evaluate(ctx, {"ensemble": fingerprint, "base": base, "alpha": alpha},
                        f"{name} lr={lr:g} ensemble a={alpha:g}",
                        lambda: OutputEnsemble(ctx.load_model(ctx.base_path), ctx.load_model(path), alpha))

    def interpolated() -> torch.nn.Module:
        # Loaded only when a point is not cached: θ_α is written into one model in memory.
        if "interp" not in kept:
            kept["interp"] = Interpolator(ctx.load_model(path), ctx.base_path, path)
        kept["interp"].set_alpha(alpha)
        return kept["interp"].model

    return evaluate(ctx, {"interpolate": fingerprint, "base": base, "alpha": alpha},
                    f"{name} lr={lr:g} WiSE-FT a={alpha:g}", interpolated)


def sweep_point_task(spec: ContextSpec, method: MethodConfig, lr: float, seed: int, kind: RowKind,
                     alpha: float) -> None:
    """Evaluate one WiSE-FT or ensemble point of one trained model."""
    ctx = context_for(spec)
    if diverged(train_cell(ctx, method, lr, seed)[0]):
        return  # nothing to mix with the base
    path = trained_path(ctx, method, lr, seed)
    kept = holder(f"sweep:{path}:{model_fingerprint(path)}:{ctx.base_path}")
    sweep_point(ctx, path, method.name, lr, kind, alpha, kept)


class SweepStage:
    """WiSE-FT and output-ensemble points of every swept model, after its training."""

    name = "sweeps"

    def weight(self, cfg: StudyConfig) -> float:
        models = sum(swept(cfg, method) for method, _, _ in trained_models(cfg))
        return models * (len(cfg.sweeps.interpolation) + 2 * len(cfg.sweeps.ensemble))

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        spec, ids = spec_of(ctx), []
        for method, lr, seed in trained_models(ctx.cfg):
            if not swept(ctx.cfg, method):
                continue
            row_id = trained_row_id(method, lr, seed)
            for kind, a in _points(ctx.cfg):
                ids.append(graph.add(f"{eval_task_id(row_id)}/{_TAGS[kind]}={a:g}",
                                     f"evaluate {row_id} {_TAGS[kind]} a={a:g}", sweep_point_task,
                                     (spec, method, lr, seed, kind, a), [train_task_id(row_id), *planned.before_eval],
                                     work=eval_work(ctx.cfg, "sweep")))
        return ids

    def rows(self, ctx: Context) -> list[Row]:
        rows = []
        for method, lr, seed in trained_models(ctx.cfg):
            if not swept(ctx.cfg, method) or diverged(train_cell(ctx, method, lr, seed)[0]):
                continue
            row_id, path, kept = trained_row_id(method, lr, seed), trained_path(ctx, method, lr, seed), {}
            family = method.family or family_of(method.train)
            for kind, alpha in _points(ctx.cfg):
                m = sweep_point(ctx, path, method.name, lr, kind, alpha, kept)
                label = f"{method.name} lr={lr:g} " + ("ens " if kind == RowKind.ENSEMBLE else "") + f"a={alpha:g}"
                rows.append(make_row(ctx, f"{row_id}/{_TAGS[kind]}={alpha:g}", label, kind, m, method=method.name,
                                     learning_rate=lr, seed=seed, alpha=alpha, parent=row_id, family=family))
        return rows
