"""``forgetless study CONFIG`` and ``forgetless report DIR``."""

from __future__ import annotations

import argparse


def cmd_study(args: argparse.Namespace) -> int:
    """Run (or resume) a study: train, sweep, evaluate, and write the report."""
    from forgetless.study.config import load_study
    from forgetless.study.runner import run_study

    overrides = {"output": args.output} if args.output else None
    cfg = load_study(args.config, overrides)
    if args.check:
        print(f"{args.config}: valid ({len(cfg.methods)} methods)")
        return 0
    run_study(cfg)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild a finished study's report from its results.jsonl."""
    from pathlib import Path

    from forgetless.study.config import load_study
    from forgetless.study.report import write_report

    root = Path(args.study_dir)
    cfg = load_study(args.config, {"output": str(root)})
    print(write_report(root, cfg))
    return 0


def add_study_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``study`` and ``report`` on the ``forgetless`` command."""
    study = sub.add_parser("study", help=cmd_study.__doc__, description=cmd_study.__doc__)
    study.add_argument("config", help="study YAML (see configs/quick.yaml)")
    study.add_argument("--output", help="study directory (overrides the YAML's output)")
    study.add_argument("--check", action="store_true", help="validate the config and stop")
    study.set_defaults(func=cmd_study)
    report = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    report.add_argument("study_dir")
    report.add_argument("--config", required=True, help="the study's YAML")
    report.set_defaults(func=cmd_report)
