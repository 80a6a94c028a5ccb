"""``forgetless study CONFIG`` and ``forgetless report DIR``.

Their flags are built from ``StudyArgs`` and ``ReportArgs``, one field per flag.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forgetless.extras import require
from forgetless.outputs import OutputError, refuse_overlap
from forgetless.schema_flags import Command, add_command


class StudyArgs(BaseModel):
    """Which study ``forgetless study`` runs, and where its cells run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    config: str = Field(description="study YAML (see configs/quick.yaml)")
    output: str | None = Field(None, description="study directory (overrides the YAML's output)")
    check: bool = Field(False, description="validate the config and stop")
    dry_run: bool = Field(False, description="check the base and every data file, count the cells and estimate the "
                                             "time from a few timed steps on this machine; trains nothing")
    no_timing: bool = Field(False, description="with --dry-run: count the cells, time nothing")
    executor: Literal["serial", "local", "ray"] | None = Field(
        None, description="where cells run: serial (this process), local (a process pool; the default with more than "
                          "one worker) or ray (a Ray cluster; pip install 'forgetless[ray]')")
    workers: int | None = Field(
        None, description="local worker processes (default: one per GPU, else one per usable core; 1 = serial)")
    address: str | None = Field(None, description="Ray cluster to join (with --executor ray): 'auto' or HOST:PORT; "
                                                   "default: start a local Ray instance")
    retries: int = Field(2, ge=0, description="times a cell whose worker died is started again before the study fails")


class ReportArgs(BaseModel):
    """The finished study whose report ``forgetless report`` rebuilds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    study_dir: str = Field(description="the study directory (holds results.jsonl)")
    config: str = Field(description="the study's YAML")


def refuse_foreign_study_dir(root: Path) -> None:
    """Refuse a study directory that exists, is not empty and holds no ``cells/``: it is a folder of the user's, whose
    report.md, results.jsonl or data/ the study would replace (a study's own directory, resumed, holds its cells).

    Raises:
        OutputError: naming the directory and some of what it holds.
    """
    if root.is_file():
        raise OutputError(f"output {root}: is a file; expected a directory for the study")
    if not root.is_dir() or (root / "cells").is_dir():
        return
    entries = sorted(p.name for p in root.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise OutputError(f"output {root}: holds {shown} and no cells/ of a study forgetless wrote; a study writes its "
                          "results and report there, so choose a new or empty directory")


def cmd_study(args: StudyArgs) -> int:
    """Run (or resume) a study: train, sweep, evaluate, and write the report."""
    import sys

    from forgetless.study.config import PROBES_INCLUDE, load_study
    from forgetless.study.running.executors import CellFailed, ExecutorError, make_executor
    from forgetless.study.running.runner import run_study

    overrides = {"output": args.output} if args.output else None
    cfg = load_study(args.config, overrides)
    # The study directory holds its cells and report: it may not be, hold or sit inside what the study reads.
    refuse_overlap(cfg.output, {"config": args.config, "base_model": cfg.base_model, "data": cfg.data,
                                "cocktail": cfg.cocktail}, flag="output")
    refuse_foreign_study_dir(Path(cfg.output))
    # A package the config needs is reported now, by --check and --dry-run too, not when its first cell runs.
    benchmarks = cfg.data.general_lm_eval
    if benchmarks is not None:
        probes = benchmarks.include_path == PROBES_INCLUDE
        require("lm_eval", *(("countryinfo", "us", "periodictable") if probes else ()))
    if args.check:
        print(f"{args.config}: valid ({len(cfg.methods)} methods)")
        return 0
    if args.dry_run:
        from forgetless.study.running.dry_run import dry_run
        from forgetless.study.running.executors import default_workers

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


def cmd_report(args: ReportArgs) -> int:
    """Rebuild a finished study's report from its results.jsonl."""
    from forgetless.study.config import load_study
    from forgetless.study.reporting.report import write_report

    root = Path(args.study_dir)
    cfg = load_study(args.config, {"output": str(root)})
    try:
        print(write_report(root, cfg))
    except (KeyError, TypeError, AttributeError, IndexError, StopIteration) as err:
        # read_rows checks each line is a JSON object; what the rows hold is read all over the report, so a row
        # that lacks a key or holds the wrong type is named here, once, rather than at every place it is read.
        what = f"key {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise ValueError(f"{root / 'results.jsonl'}: a row lacks a key or holds a value of the wrong type ({what}); "
                         "expected the rows forgetless study wrote") from None
    return 0


def add_study_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``study`` and ``report`` on the ``forgetless`` command."""
    # Neither takes the common --config: the study's YAML is their own argument (StudyArgs.config, ReportArgs.config).
    add_command(sub, "study", Command(StudyArgs, cmd_study, config_file=False), show_defaults=True,
                positional={"config"})
    add_command(sub, "report", Command(ReportArgs, cmd_report, config_file=False), positional={"study_dir"})
