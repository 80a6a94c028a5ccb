"""``forgetless theory``: the over-adaptation and tilting simulations from the command line.

Flags are built from the fields of the parameter schemas, so they cannot drift from them.
Each command writes ``<name>.png`` and ``<name>.json`` into ``--output`` (default
``runs/theory/<name>``), every file atomically, and prints a short summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgetless.atomic import write_json
from forgetless.schema_flags import add_schema_flags, schema_from_flags
from forgetless.theory.overadaptation import OveradaptationParams, run_overadaptation
from forgetless.theory.tilting import TiltingParams, run_tilting


def _write(result: dict[str, Any], output: Path, name: str, plot: Callable[[dict[str, Any], Path], Path]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    plot(result, output / f"{name}.png")
    write_json(output / f"{name}.json", result)


def cmd_overadaptation(args: argparse.Namespace) -> int:
    """Bias-variance of fine-tuning, ridge towards the pretrained weights, and their ensemble."""
    from forgetless.theory.plots import plot_overadaptation

    result = run_overadaptation(schema_from_flags(OveradaptationParams, args))
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


def cmd_tilting(args: argparse.Namespace) -> int:
    """Code-length trade-off of fine-tuning as exponential tilting, plain and TALR-weighted."""
    from forgetless.theory.plots import plot_tilting

    result = run_tilting(schema_from_flags(TiltingParams, args))
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
    for name, func, schema in (
        ("overadaptation", cmd_overadaptation, OveradaptationParams),
        ("tilting", cmd_tilting, TiltingParams),
    ):
        parser = sub.add_parser(name, help=func.__doc__, description=func.__doc__)
        add_schema_flags(parser, schema, show_defaults=True)
        parser.add_argument("--output", help=f"output directory (default: runs/theory/{name})")
        parser.set_defaults(func=func)
