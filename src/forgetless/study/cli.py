"""``forgetless study CONFIG`` and ``forgetless report DIR``."""

from __future__ import annotations

import argparse


def cmd_study(args: argparse.Namespace) -> int:
    """Run (or resume) a study: train, sweep, evaluate, and write the report."""
    import sys

    from forgetless.study.config import load_study
    from forgetless.study.executors import CellFailed, ExecutorError, make_executor
    from forgetless.study.runner import run_study

    overrides = {"output": args.output} if args.output else None
    cfg = load_study(args.config, overrides)
    if args.check:
        print(f"{args.config}: valid ({len(cfg.methods)} methods)")
        return 0
    if args.dry_run:
        from forgetless.study.dry_run import dry_run
        from forgetless.study.executors import default_workers

        workers = args.workers or (1 if args.executor == "serial" else default_workers())
        print(f"{args.config}: valid ({len(cfg.methods)} methods); dry run, nothing is trained")
        for line in dry_run(cfg, workers, timing=not args.no_timing).lines():
            print(line)
        return 0
    try:
        run_study(cfg, executor=make_executor(args.executor, args.workers, args.address, args.retries))
    except (ExecutorError, CellFailed) as err:
        print(f"forgetless: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ExecutorError) else 1
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
    study.add_argument("--dry-run", action="store_true",
                       help="check the base and every data file, count the cells and estimate the time from a few "
                            "timed steps on this machine; trains nothing")
    study.add_argument("--no-timing", action="store_true", help="with --dry-run: count the cells, time nothing")
    study.add_argument("--executor", choices=["serial", "local", "ray"],
                       help="where cells run: serial (this process), local (a process pool; the default with more "
                            "than one worker) or ray (a Ray cluster; pip install 'forgetless[ray]')")
    study.add_argument("--workers", type=int,
                       help="local worker processes (default: one per GPU, else one per usable core; 1 = serial)")
    study.add_argument("--address", help="Ray cluster to join (with --executor ray): 'auto' or HOST:PORT; "
                                         "default: start a local Ray instance")
    study.add_argument("--retries", type=int, default=2,
                       help="times a cell whose worker died is started again before the study fails (default 2)")
    study.set_defaults(func=cmd_study)
    report = sub.add_parser("report", help=cmd_report.__doc__, description=cmd_report.__doc__)
    report.add_argument("study_dir")
    report.add_argument("--config", required=True, help="the study's YAML")
    report.set_defaults(func=cmd_report)
