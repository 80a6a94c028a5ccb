"""``forgetless tune CONFIG --method NAME``: one method's search, outside a whole study.

For a user who has chosen the method and wants its settings: the study config's base,
data, training, budget and ``search:`` budget, one of its methods (searched with its
``search:`` block, or as ``learning_rates: auto`` when it has fixed learning rates), and
only two stages: the base's evaluation and the search (``forgetless.study.running.stages.search``).
It runs on the study's executors, resumes like a study, writes the study's report (with
the search section) and prints the chosen settings and the chosen model's directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from forgetless.outputs import refuse_overlap
from forgetless.schema_flags import Command, add_command

if TYPE_CHECKING:  # imported when a command runs: the CLI's start stays light
    from forgetless.study.config import StudyConfig


class TuneArgs(BaseModel):
    """Which method ``forgetless tune`` searches, on what budget, and where its cells run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    config: str = Field(description="study YAML naming the base, the data and the method (see configs/tuned.yaml)")
    method: str = Field(description="the name of the method to tune (one of the config's methods)")
    output: str | None = Field(None, description="directory of the search (default: the study's output + -tune-METHOD)")
    trials: int | None = Field(None, ge=1, description="settings proposed (default: the config's search.trials)")
    rungs: int | None = Field(None, ge=1, description="successive halving's rungs (default: the config's search.rungs)")
    reduction: int | None = Field(None, ge=2, description="successive halving's η (default: the config's "
                                                           "search.reduction)")
    seed: int | None = Field(None, ge=0, description="the sampler's seed (default: the config's search.seed)")
    executor: Literal["serial", "local", "ray"] | None = Field(
        None, description="where cells run: serial, local (a process pool) or ray, as for forgetless study")
    workers: int | None = Field(None, description="local worker processes (default: one per GPU, else per core)")
    address: str | None = Field(None, description="Ray cluster to join (with --executor ray)")
    retries: int = Field(2, ge=0, description="times a cell whose worker died is started again")


def tune_config(args: TuneArgs) -> StudyConfig:
    """The study config of the search: the one method, tuned, with the flags' budget.

    Raises:
        ConfigError: the config or the method's keys are invalid.
        ValueError: the method is not in the config.
    """
    # imported here: the command's library loads only when it runs, so `forgetless --help` starts without torch
    from forgetless.config import load_yaml
    from forgetless.study.config import load_study

    values = load_yaml(args.config)
    methods = [m for m in values.get("methods") or [] if isinstance(m, dict) and m.get("name") == args.method]
    if not methods:
        names = [m.get("name") for m in values.get("methods") or [] if isinstance(m, dict)]
        raise ValueError(f"{args.config}: no method named {args.method!r}; the config has {names}")
    method = dict(methods[0])
    if "search" not in method:  # a grid method: its learning rate and key parameter searched with the defaults
        method["learning_rates"] = "auto"
    search = {**(values.get("search") or {}),
              **{k: v for k, v in (("trials", args.trials), ("rungs", args.rungs), ("reduction", args.reduction),
                                   ("seed", args.seed)) if v is not None}}
    output = args.output or f"{values.get('output', 'runs/study')}-tune-{args.method}"
    return load_study(args.config, {"methods": [method], "search": search, "output": output, "cocktail": None,
                                    "sweeps": {"interpolation": [0.5], "ensemble": [], "methods": []}})


def cmd_tune(args: TuneArgs) -> int:
    """Search one method's settings (successive halving) and report the best checkpoint within the budget."""
    # imported here: the command's library loads only when it runs, so `forgetless --help` starts without torch
    from forgetless.study.cli import refuse_foreign_study_dir
    from forgetless.study.running.executors import CellFailed, ExecutorError, make_executor
    from forgetless.study.running.runner import run_study
    from forgetless.study.running.stages.base_model import BaseStage
    from forgetless.study.running.stages.search import SearchStage

    cfg = tune_config(args)
    refuse_overlap(cfg.output, {"config": args.config, "base_model": cfg.base_model, "data": cfg.data}, flag="output")
    refuse_foreign_study_dir(Path(cfg.output))
    try:
        root = run_study(cfg, executor=make_executor(args.executor, args.workers, args.address, args.retries),
                         stages=(BaseStage(), SearchStage()))
    except (ExecutorError, CellFailed) as err:
        print(f"forgetless: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ExecutorError) else 1
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    record = (rows[0].get("searches") or {}).get(args.method) or {}
    tuned = next((r for r in rows if r.get("tuned")), None)
    if tuned is None:
        print(f"{args.method}: no checkpoint of the search stays within the forgetting budget of "
              f"{cfg.budget:g} nats/token; see {root / 'report.md'}")
        return 1
    print(f"{args.method}: chosen {json.dumps(tuned['settings'])} at step {tuned['step']} "
          f"(validation {tuned['validation_accuracy']:.1%}, forgetting {tuned['forgetting']:+.3f} nats/token; "
          f"{record.get('steps')} training steps searched)")
    for warning in record.get("edges", []):
        print(f"warning: {warning}")
    print(f"model: {tuned['path']}\nreport: {root / 'report.md'}")
    return 0


def add_tune_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``tune`` on the ``forgetless`` command."""
    # No common --config: the study's YAML is its own argument (TuneArgs.config), as for `forgetless study`.
    add_command(sub, "tune", Command(TuneArgs, cmd_tune, config_file=False), show_defaults=True,
                positional={"config"})
