"""The study's pictures, drawn from result rows only: the frontier and the alpha curves."""

from __future__ import annotations

from pathlib import Path
import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from forgetless.atomic import atomic_file  # noqa: E402
from forgetless.study.reporting.cocktail_curves import cocktail_curve  # noqa: E402
from forgetless.study.reporting.frontier import pareto_front  # noqa: E402
from forgetless.study.rows import Row, RowKind  # noqa: E402

# A row of a kind not listed (a stage's own) is drawn as a circle.
_MARKERS = {RowKind.BASE: "*", RowKind.TRAINED: "o", RowKind.INTERPOLATION: ".", RowKind.ENSEMBLE: "^",
            RowKind.COCKTAIL: "D"}


def _save(fig: matplotlib.figure.Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (a killed report never leaves half a picture) and close it."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _curve(rows: list[Row], base: Row, parent: Row, kind: RowKind) -> list[Row]:
    """Base, the sweep's interior points, then the fine-tuned model: one curve from alpha 0 to 1."""
    inner = sorted((r for r in rows if r.get("parent") == parent["id"] and r["kind"] == kind), key=lambda r: r["alpha"])
    return [{**base, "alpha": 0.0}, *inner, {**parent, "alpha": 1.0}]


def plot_frontier(rows: list[Row], path: Path, axis: str = "loss") -> Path:
    """Gain against forgetting, one point per model, the Pareto front drawn, sweeps as curves.

    ``axis``: what ``forgetting`` measures in ``rows`` (``loss``, or the lm-eval task the rows were put on
    with ``forgetless.study.reporting.benchmarks.on_axis``).
    """
    base = next(r for r in rows if r["kind"] == RowKind.BASE)
    trained = [r for r in rows if r["kind"] == RowKind.TRAINED]
    colors = {r["id"]: plt.cm.tab10(i % 10) for i, r in enumerate(trained)}
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for parent in trained:
        curve = _curve(rows, base, parent, RowKind.INTERPOLATION)
        if len(curve) > 2:
            ax.plot([r["forgetting"] for r in curve], [r["gain"] for r in curve], "-", color=colors[parent["id"]],
                    alpha=0.45, linewidth=1.2)
        # LM-Cocktail's alpha curve beside WiSE-FT's: from the mix (alpha 0) to the fine-tuned model.
        cocktail = cocktail_curve(rows, base, parent)
        if cocktail:
            ax.plot([r["forgetting"] for r in cocktail], [r["gain"] for r in cocktail], "-.",
                    color=colors[parent["id"]], linewidth=1.2, zorder=2,
                    label=f"LM-Cocktail alpha curve ({parent['label']})")
    for row in rows:
        # Sweeps share their fine-tuned model's colour; merges of several models are black.
        color = "black" if row["kind"] == RowKind.COCKTAIL else colors.get(row["id"],
                                                                          colors.get(row.get("parent"), "black"))
        size = 90 if row["kind"] in (RowKind.TRAINED, RowKind.BASE, RowKind.COCKTAIL) else 35
        ax.scatter(row["forgetting"], row["gain"], marker=_MARKERS.get(row["kind"], "o"), s=size, color=color,
                   edgecolors="black" if row["kind"] in (RowKind.TRAINED, RowKind.COCKTAIL) else "none", zorder=3,
                   label=row["label"] if row["kind"] == RowKind.TRAINED else None)
    front = pareto_front(rows)
    ax.step([r["forgetting"] for r in front], [r["gain"] for r in front], where="post", color="black",
            linestyle="--", linewidth=1, label="Pareto front", zorder=2)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("forgetting: held-out general loss minus base (nats/token)  ->  worse" if axis == "loss" else
                  f"forgetting on {axis}: base score minus the model's  ->  worse")
    ax.set_ylabel("gain: domain exact match minus base  ->  better")
    ax.set_title("Domain gain against general forgetting (up and to the left is better)")
    for kind, text in ((RowKind.INTERPOLATION, "WiSE-FT point"), (RowKind.ENSEMBLE, "output ensemble"),
                       (RowKind.COCKTAIL, "LM-Cocktail point")):
        if any(r["kind"] == kind for r in rows):
            ax.scatter([], [], marker=_MARKERS[kind], color="grey", label=text)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def plot_alpha_curves(rows: list[Row], path: Path) -> Path | None:
    """Domain accuracy and general loss against alpha for every interpolation (solid), ensemble (dotted)
    and LM-Cocktail sweep (dashed; its alpha 0 is the mix of base and peers, not the base)."""
    base = next(r for r in rows if r["kind"] == RowKind.BASE)
    parents = [r for r in rows if r["kind"] == RowKind.TRAINED and any(x.get("parent") == r["id"] for x in rows)]
    if not parents:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, parent in enumerate(parents):
        color = plt.cm.tab10(i % 10)
        for kind, style in ((RowKind.INTERPOLATION, "-o"), (RowKind.ENSEMBLE, ":^")):
            curve = _curve(rows, base, parent, kind)
            if len(curve) <= 2 and kind == RowKind.ENSEMBLE:
                continue
            alphas = [r["alpha"] for r in curve]
            label = parent["label"] + (" (ensemble)" if kind == RowKind.ENSEMBLE else "")
            left.plot(alphas, [r["domain_accuracy"] for r in curve], style, color=color, markersize=4, label=label)
            right.plot(alphas, [r["general_nats_per_token"] for r in curve], style, color=color, markersize=4)
        cocktail = cocktail_curve(rows, base, parent)  # LM-Cocktail, same alpha axis (0 = the mix of base and peers)
        if cocktail:
            alphas = [r["alpha"] for r in cocktail]
            left.plot(alphas, [r["domain_accuracy"] for r in cocktail], "--D", color=color, markersize=4,
                      label=parent["label"] + " (LM-Cocktail)")
            right.plot(alphas, [r["general_nats_per_token"] for r in cocktail], "--D", color=color, markersize=4)
    cocktail_rows = any(r["kind"] == RowKind.COCKTAIL for r in rows)
    xlabel = "alpha (0 = base" + (" or LM-Cocktail's mix" if cocktail_rows else "") + ", 1 = fine-tuned)"
    left.set_xlabel(xlabel)
    left.set_ylabel("domain exact match")
    right.set_xlabel(xlabel)
    right.set_ylabel("held-out general loss (nats/token)")
    left.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.25)
    fig.suptitle("Interpolating base and fine-tuned weights (WiSE-FT) and outputs (ensemble)"
                 + ("; LM-Cocktail dashed" if cocktail_rows else ""))
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curves(rows: list[Row], path: Path) -> Path | None:
    """Validation exact match and held-out general loss against training step, one line per trained model."""
    trained = [r for r in rows if r["kind"] == RowKind.TRAINED and len(r.get("curve") or []) > 1]
    if not trained:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, row in enumerate(trained):
        steps = [p["step"] for p in row["curve"]]
        style = "-" if row.get("family") == "sft" else "--"
        left.plot(steps, [p["validation_accuracy"] for p in row["curve"]], style, marker="o", markersize=3,
                  color=plt.cm.tab10(i % 10), label=row["label"])
        right.plot(steps, [p["general_nats_per_token"] for p in row["curve"]], style, marker="o", markersize=3,
                   color=plt.cm.tab10(i % 10))
    left.set_ylabel("validation exact match (curve slice)")
    left.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    right.set_ylabel("held-out general loss (nats/token)")
    for ax in (left, right):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.25)
    left.legend(fontsize=7)
    fig.suptitle("Learning curves: was each method still learning when its budget ended?")
    fig.tight_layout()
    return _save(fig, path)
