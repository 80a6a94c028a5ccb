"""Figures of the theory simulations, drawn from their result dicts.

matplotlib is imported inside the functions, with the Agg backend, so importing
``forgetless.theory`` stays free of side effects and works without a display.
Each PNG is written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
    return path


def plot_overadaptation(result: dict[str, Any], path: str | Path, dpi: int = 90) -> Path:
    """Risk against α, λ and gradient steps, and the Monte Carlo check, as one PNG.

    Args:
        result: the dict of :func:`forgetless.theory.overadaptation.run_overadaptation`.
        path: where the PNG goes.
        dpi: resolution (90 keeps the file near 100 KB).

    Returns:
        ``path``.
    """
    plt = _pyplot()
    alphas = np.array(result["grids"]["alpha"])
    lams = np.array(result["grids"]["lambda"])
    steps = np.array(result["grids"]["gd_steps"])
    avg, summary = result["averaged"], result["summary"]["averaged"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)

    def risk_panel(ax: Any, x: np.ndarray, block: dict[str, list[float]], xlabel: str, log: bool) -> None:
        bias, var = np.array(block["finetune_bias"]), np.array(block["finetune_variance"])
        ax.plot(x, bias + var, color="k", lw=2, label="risk (fine-tuning task)")
        ax.plot(x, bias, color="tab:blue", label="bias (offset left unfit)")
        ax.plot(x, var, color="tab:orange", label="variance (noise fit)")
        ax.plot(x, np.array(block["pretrain_bias"]) + np.array(block["pretrain_variance"]),
                color="tab:green", ls="--", label="risk (pretraining task)")
        ax.axhline(summary["best_alpha_risk"], color="tab:red", ls=":", lw=1, label="best ensemble")
        ax.axhline(summary["best_ridge_risk_with_limits"], color="tab:purple", ls=":", lw=1, label="best ridge")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("excess risk")
        ax.set_ylim(0, max(2.0, 1.1 * summary["pretrained_risk"]))

    risk_panel(axes[0, 0], alphas, avg["ensemble"], "ensemble weight α (0: pretrained, 1: fine-tuned)", log=False)
    axes[0, 0].axvline(summary["best_alpha"], color="tab:red", lw=0.8)
    axes[0, 0].set_title(f"Ensemble: best α = {summary['best_alpha']:.2f}, risk {summary['best_alpha_risk']:.3f}")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    risk_panel(axes[0, 1], lams, avg["ridge"], "ridge λ towards β_pre", log=True)
    axes[0, 1].axvline(summary["best_lambda"], color="tab:purple", lw=0.8)
    axes[0, 1].set_title(f"Ridge: best λ = {summary['best_lambda']:.3g}, risk {summary['best_lambda_risk']:.3f}")
    risk_panel(axes[1, 0], steps, avg["gd"], "gradient-descent steps from β_pre", log=True)
    axes[1, 0].set_title(f"Early stopping: best {summary['best_gd_steps']:.0f} steps, risk {summary['best_gd_risk']:.3f}")

    ax = axes[1, 1]
    cond, mc = result["conditional"]["ensemble"], result["monte_carlo"]["ensemble"]["finetune"]
    for comp, color in (("bias", "tab:blue"), ("variance", "tab:orange")):
        ax.plot(alphas, cond[f"finetune_{comp}"], color=color, label=f"{comp}, closed form")
        every = slice(0, len(alphas), max(1, len(alphas) // 20))
        ax.errorbar(alphas[every], np.array(mc[comp])[every], yerr=4 * np.array(mc[f"{comp}_se"])[every],
                    fmt="o", ms=3, color=color, label=f"{comp}, Monte Carlo ± 4 s.e.")
    ax.set_xlabel("ensemble weight α")
    ax.set_ylabel("excess risk, one fixed X")
    ax.set_title("Closed form vs Monte Carlo (fixed X, fresh noise)")
    ax.legend(fontsize=8)
    p = result["params"]
    fig.suptitle(f"Over-adaptation: d={p['d']}, n={p['n']}, μ_j ∝ j^-{p['decay']:g}, σ={p['noise']:g}, "
                 f"offset power {p['offset_power']:g}; curves averaged over {p['x_draws']} draws of X")
    out = _save(fig, path, dpi)
    plt.close(fig)
    return out


def plot_tilting(result: dict[str, Any], path: str | Path, dpi: int = 90) -> Path:
    """Trade-off curves, code-length changes against λ, and TALR's matched-gain cost, as one PNG.

    Args:
        result: the dict of :func:`forgetless.theory.tilting.run_tilting`.
        path: where the PNG goes.
        dpi: resolution.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    lams = np.array(result["lambda"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
    paths = {"plain": result["plain"], **{f"TALR τ={tau}": c for tau, c in result["talr"].items()}}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), constrained_layout=True)

    ax = axes[0]
    for (name, c), color in zip(paths.items(), ["k", *colors]):
        dom, gen = np.array(c["domain"]), np.array(c["general"])
        k = int(np.argmin(dom)) + 1  # past the largest gain the tilt overshoots; not drawn
        ax.plot(-dom[:k], gen[:k], color=color, label=name)
        safe = int(np.searchsorted(lams, c["safe_lambda"]))
        if safe < k:
            ax.plot(-dom[safe], gen[safe], "o", color=color, ms=4)
    ax.axhline(result["params"]["general_budget"], color="grey", ls=":", lw=0.8,
               label="general budget (dots: safe λ)")
    ax.set_xlabel("domain gain  −ΔL(domain)  [nats]")
    ax.set_ylabel("general degradation  ΔL(general)  [nats]")
    ax.set_title(f"Trade-off as λ grows (domain seed {result['params']['seed']})")
    ax.legend(fontsize=8)

    ax = axes[1]
    for (name, c), color in zip(paths.items(), ["k", *colors]):
        ax.plot(lams, c["domain"], color=color, ls="-", label=f"{name}: domain")
        ax.plot(lams, c["general"], color=color, ls="--", label=f"{name}: general")
    ax.plot(lams, result["plain"]["general_bound"], color="grey", ls=":", label="Hoeffding bound (plain, general)")
    top = max(np.max(result["plain"]["general"]), 0.1)
    ax.set_ylim(min(np.min(c["domain"]) for c in paths.values()) * 1.1, top)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"λ  (reward: {result['params']['reward']})")
    ax.set_ylabel("ΔL  [nats]")
    ax.set_title("Code-length change against λ")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[2]
    draws = result["summary"]["talr"]
    for i, ((tau, block), color) in enumerate(zip(draws.items(), colors)):
        ratios = [r for r in block["draws"]["cost_ratios"] if r is not None]
        jitter = np.linspace(-0.15, 0.15, len(ratios)) if len(ratios) > 1 else np.zeros(len(ratios))
        ax.scatter(i + jitter, ratios, color=color, alpha=0.7,
                   label=f"τ={tau}: lower in {block['draws']['wins']}/{result['summary']['domain_draws']} domains")
    ax.axhline(1, color="k", lw=0.8)
    ax.set_xticks(range(len(draws)), [f"τ={tau}" for tau in draws])
    ax.set_yscale("log")
    ax.set_ylabel("general cost, TALR / plain, at matched domain gain")
    ax.set_title(f"TALR over {result['summary']['domain_draws']} domains (below 1: TALR forgets less)")
    ax.legend(fontsize=8)
    out = _save(fig, path, dpi)
    plt.close(fig)
    return out
