"""``forgetless theory``: the over-adaptation and tilting simulations from the command line.

Flags are built from the fields of the parameter schemas (and ``--output``, a field of the
commands' own schemas), so they cannot drift from them. Each command writes ``<name>.png``
and ``<name>.json`` into ``--output`` (default ``runs/theory/<name>``), every file
atomically, and prints a short summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from forgetless.atomic import write_json
from forgetless.schema_flags import Command, add_command
from forgetless.theory.overadaptation import OveradaptationParams, run_overadaptation
from forgetless.theory.tilting import TiltingParams, run_tilting


class OveradaptationArgs(OveradaptationParams):
    """``forgetless theory overadaptation``: the simulation's parameters and where its files go."""

    output: str | None = Field(None, description="output directory (default: runs/theory/overadaptation)")


class TiltingArgs(TiltingParams):
    """``forgetless theory tilting``: the simulation's parameters and where its files go."""

    output: str | None = Field(None, description="output directory (default: runs/theory/tilting)")


def _params(args: BaseModel, params: type[BaseModel]) -> Any:
    """The simulation's own parameters out of the command's (already validated: not checked again), so the
    recorded ``params`` hold no output directory."""
    return params.model_construct(**args.model_dump(exclude={"output"}))


def _write(result: dict[str, Any], output: Path, name: str, plot: Callable[[dict[str, Any], Path], Path]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    plot(result, output / f"{name}.png")
    write_json(output / f"{name}.json", result)


def cmd_overadaptation(args: OveradaptationArgs) -> int:
    """Bias-variance of fine-tuning, ridge towards the pretrained weights, and their ensemble."""
    from forgetless.theory.plots import plot_overadaptation

    result = run_overadaptation(_params(args, OveradaptationParams))
    output = Path(args.output or "runs/theory/overadaptation")
    _write(result, output, "overadaptation", plot_overadaptation)
    s = result["summary"]["averaged"]
    print(f"risk on the fine-tuning task (averaged over {result['params']['x_draws']} draws of X):")
    print(f"  pretrained {s['pretrained_risk']:.4f}   fine-tuned {s['finetuned_risk']:.4f}")
    print(f"  best ensemble  alpha  = {s['best_alpha']:.3f}  risk {s['best_alpha_risk']:.4f}"
          f"  (pretraining task {s['pretrain_risk_at_best_alpha']:.4f})")
    print(f"  best ridge     lambda = {s['best_lambda']:.4g}  risk {s['best_lambda_risk']:.4f}"
          f"  (pretraining task {s['pretrain_risk_at_best_lambda']:.4f})")
    print(f"  best early stopping {s['best_gd_steps']:.0f} steps  risk {s['best_gd_risk']:.4f}")
    verdict = "beats" if s["ensemble_beats_ridge"] else "does not beat"
    print(f"  the best ensemble {verdict} the best ridge (ratio {s['ensemble_over_ridge']:.3f});"
          f" best alpha is {'inside' if s['best_alpha_interior'] else 'at an end of'} (0, 1)")
    print(f"written to {output}/overadaptation.png and .json in {result['seconds']:.2f} s")
    return 0


def cmd_tilting(args: TiltingArgs) -> int:
    """Code-length trade-off of fine-tuning as exponential tilting, plain and TALR-weighted."""
    from forgetless.theory.plots import plot_tilting

    result = run_tilting(_params(args, TiltingParams))
    output = Path(args.output or "runs/theory/tilting")
    _write(result, output, "tilting", plot_tilting)
    s = result["summary"]
    print(f"KL(domain||q) = {s['kl_domain_model']:.4f} nats; reward {result['params']['reward']};"
          f" general degradation grows with lambda: {s['general_grows_with_lambda']}")
    p = s["plain"]
    print(f"  plain:     safe lambda {p['safe_lambda']:.3g}, domain gain there {p['gain_at_safe_lambda']:.4f},"
          f" max gain {p['max_domain_gain']:.4f}")
    for tau, t in s["talr"].items():
        d = t["draws"]
        print(f"  TALR tau={tau}: safe lambda {t['safe_lambda']:.3g}, gain there {t['gain_at_safe_lambda']:.4f};"
              f" lower general cost at every matched gain in {d['wins']}/{s['domain_draws']} domains"
              f" (median cost ratio {d['median_cost_ratio']:.3f})")
    print(f"written to {output}/tilting.png and .json in {result['seconds']:.2f} s")
    return 0


def add_theory_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``theory overadaptation`` and ``theory tilting`` to the ``forgetless`` command."""
    summary = "The linear-model and tilting simulations (docs/methods.md#theory)"
    theory = subparsers.add_parser("theory", help=summary, description=summary)
    sub = theory.add_subparsers(dest="theory_command", required=True)
    add_command(sub, "overadaptation", Command(OveradaptationArgs, cmd_overadaptation), show_defaults=True)
    add_command(sub, "tilting", Command(TiltingArgs, cmd_tilting), show_defaults=True)
