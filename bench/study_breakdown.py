"""Where a study's time went: training against everything around it (evaluation, sampling, merges, loading).

    python bench/study_breakdown.py runs/real             # any study directory, finished or not

Reads only what the study wrote:

- ``logs/*.log`` (workers of ``--executor local`` or ``ray``): each cell's log opens with
  ``[worker pid N on HOST] YYYY-MM-DD HH:MM:SS start TASK`` and is last written when the cell ends, so a cell's
  wall time is from its last start line to the log's modification time (one-second resolution);
- ``cells/train-*/result.json``: ``seconds``, the Trainer's own wall time (``forgetless.json``'s
  ``wall_seconds``); the rest of a training cell is loading, tokenizing, the replay KL log's draw when it is on,
  and saving; the KL log's scorings run inside the Trainer's loop and count as training here;
- ``cells/eval-*/timing.json`` (studies run since these were recorded): each evaluation's parts, in seconds:
  ``model`` (loading, merging, building an ensemble), ``general`` (code length of the held-out text),
  ``domain`` (decoding the test set), ``kl`` (scoring the held-out context-free samples), ``validation``
  (decoding the validation set), ``lm_eval`` (the lm-eval tasks: the probes decode);
- without logs (``--executor serial``): cells run one after another, so each cell's time is the gap between its
  ``result.json`` and the one written before it.

Cell-seconds add up the workers' time (two workers side by side give twice the study's wall time); the shares
are of cell-seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

START = re.compile(r"^\[worker pid (\d+) on [^\]]*\] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) start (\w+)", re.MULTILINE)
PHASES = ("model", "general", "domain", "kl", "validation", "lm_eval")


def kind_of_log(name: str) -> str:
    """The share a cell log's time goes to, from its name (``train__...``, ``eval__...``, ``samples__...``)."""
    if name.startswith("train__"):
        return "training cells"
    if name.startswith("eval__") and ("__interp=" in name or "__ensemble=" in name or "__cocktail" in name):
        return "sweep points (merge + evaluation)"
    if name.startswith("eval__"):
        return "evaluation"
    if name.startswith("samples__"):
        return "sampling (context-free / replay data)"
    return "other cells"


def from_logs(root: Path) -> tuple[dict[str, float], float, float, int]:
    """Cell-seconds per share, the first start and last end (epoch seconds), and the number of workers."""
    shares: dict[str, float] = defaultdict(float)
    first, last, workers = float("inf"), 0.0, set()
    for log in sorted((root / "logs").glob("*.log")):
        starts = START.findall(log.read_text(errors="replace"))
        if not starts:
            continue
        pid, stamp, _ = starts[-1]
        begin = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
        end = log.stat().st_mtime
        shares[kind_of_log(log.stem)] += end - begin
        workers.add(pid)
        first, last = min(first, time.mktime(time.strptime(starts[0][1], "%Y-%m-%d %H:%M:%S"))), max(last, end)
    return shares, first, last, len(workers)


def from_results(root: Path) -> tuple[dict[str, float], float, float]:
    """Cell-seconds per share for a serial study: the gaps between consecutive ``result.json`` files."""
    shares: dict[str, float] = defaultdict(float)
    results = sorted((p.stat().st_mtime, p.parent.name) for p in (root / "cells").glob("*/result.json"))
    if not results:
        return shares, 0.0, 0.0
    kinds = {"train": "training cells", "eval": "evaluation", "samples": "sampling (context-free / replay data)"}
    previous = min(p.stat().st_mtime for p in (root / "cells").glob("*/spec.json"))
    for mtime, name in results:
        shares[kinds.get(name.split("-")[0], "other cells")] += mtime - previous
        previous = mtime
    return shares, results[0][0], results[-1][0]


def main() -> None:
    """Print the study's breakdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    args = parser.parse_args()
    root = args.study
    if not (root / "cells").is_dir():
        sys.exit(f"{root}: no cells/ directory; expected a study's output directory")
    shares, first, last, workers = from_logs(root) if (root / "logs").is_dir() else ({}, 0.0, 0.0, 0)
    source = f"cell logs, {workers} worker(s)"
    if not shares:
        shares, first, last = from_results(root)
        workers, source = 1, "result.json times (serial run)"
    trainer = 0.0
    for result in (root / "cells").glob("train-*/result.json"):
        trainer += json.loads(result.read_text()).get("seconds") or 0.0
    if "training cells" in shares:
        shares["training: the Trainer's steps"] = trainer
        shares["training cells outside the Trainer (load, KL-log draw, save)"] = shares.pop("training cells") - trainer
    report = root / "report.md"
    if report.is_file() and last and report.stat().st_mtime > last:
        shares["rows and report"] = report.stat().st_mtime - last
        last = report.stat().st_mtime
    total = sum(shares.values())
    print(f"{root}: {source}; study wall time {(last - first) / 60:.1f} min, {total / 60:.1f} cell-minutes")
    print(f"{'share':<62} {'seconds':>8} {'of all':>7}")
    for name, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"{name:<62} {seconds:>8.0f} {seconds / total:>7.1%}")
    outside = total - shares.get("training: the Trainer's steps", 0.0)
    print(f"{'outside training':<62} {outside:>8.0f} {outside / total:>7.1%}")
    phases: dict[str, float] = defaultdict(float)
    timed = 0
    for timing in (root / "cells").glob("eval-*/timing.json"):
        timed += 1
        for phase, seconds in json.loads(timing.read_text())["seconds"].items():
            phases[phase] += seconds
    evaluations = len(list((root / "cells").glob("eval-*/result.json")))
    if not timed:
        print(f"evaluation parts: not recorded in this study's {evaluations} evaluation cells (no timing.json)")
        return
    whole = phases.pop("total")
    print(f"evaluation parts, {timed} of {evaluations} evaluation cells ({whole:.0f} s):")
    for phase in sorted(phases, key=lambda p: -phases[p]):
        print(f"  {phase:<12} {phases[phase]:>8.0f} s {phases[phase] / whole:>7.1%}")


if __name__ == "__main__":
    main()
