"""Benchmark: does successive halving pick the model an exhaustive grid picks, with at most half its steps?

Reads a finished study that runs each method twice (``configs/tuned_grid.yaml``): once as a
grid (``<name>-grid``: every learning rate trained the whole schedule) and once searched over
the same learning rates (``<name>``: ``search:`` with the same choices). For each method it
prints

- the grid's pick by the study's own rule (the highest validation exact match of the finished
  runs, on ``eval.validation_limit`` examples; ties: less forgetting),
- the grid's pick by the search's rule (the best learning-curve point of every run within the
  forgetting budget, on the curve's ``eval.curve_examples``: ``halving.Outcome.chosen``),
- the search's pick and the training steps of each side,

and whether the search picked the grid's learning rate and checkpoint. The grid's curves
also check the search's cells: a trial is the first steps of the same schedule, so its
point at the chosen step should equal the grid run's at that learning rate and step.

Run:  .venv/bin/forgetless study configs/tuned_grid.yaml
      .venv/bin/python bench/search_vs_grid.py runs/tuned-grid
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from forgetless.study.tuning.halving import Outcome, Point, Trial


def grid_points(rows: list[dict[str, Any]]) -> tuple[list[Trial], dict[int, list[Point]]]:
    """The grid's runs as trials of one search (number = rank of the learning rate), with their curve points."""
    trials, points = [], {}
    for number, row in enumerate(sorted(rows, key=lambda r: r["learning_rate"])):
        trials.append(Trial(row["method"], number, row["learning_rate"], ()))
        curve = row.get("curve") or []
        start = curve[0]["general_nats_per_token"] if curve and curve[0]["step"] == 0 else math.nan
        points[number] = [Point(number, p["step"], p["validation_accuracy"], p["general_nats_per_token"] - start,
                                math.inf if p.get("validation_loss") is None else p["validation_loss"])
                          for p in curve if p["step"] > 0]
    return trials, points


def compare(rows: list[dict[str, Any]], name: str, search: dict[str, Any]) -> dict[str, Any]:
    """One method's comparison (see the module docstring)."""
    grid = [r for r in rows if r.get("kind") == "trained" and r.get("method") == f"{name}-grid"]
    if not grid:
        raise SystemExit(f"no grid rows for {name!r} (expected method {name}-grid)")
    budget = float(search["budget"])
    final = max(grid, key=lambda r: (r.get("validation_accuracy") or 0.0, -r["forgetting"]))
    trials, points = grid_points(grid)
    best = Outcome(trials, points).chosen(budget)
    by_curve = None if best is None else (trials[best.trial].learning_rate, best.step, best.validation)
    chosen = search.get("chosen")
    picked = None if chosen is None else (chosen["settings"]["learning_rate"], chosen["step"], chosen["validation"])
    grid_steps = sum(max((p["step"] for p in r.get("curve") or []), default=0) for r in grid)
    agree = None
    if picked is not None:  # the grid run at the search's learning rate, at the search's step
        run = next((r for r in grid if math.isclose(r["learning_rate"], picked[0], rel_tol=1e-9)), None)
        point = next((p for p in (run or {}).get("curve") or [] if p["step"] == picked[1]), None)
        agree = None if point is None else point["validation_accuracy"]
    return {"method": name, "grid_final": (final["learning_rate"], final.get("validation_accuracy")),
            "grid_curve": by_curve, "search": picked, "grid_steps": grid_steps, "search_steps": search["steps"],
            "grid_point_at_search_pick": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, nargs="?", default=Path("runs/tuned-grid"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.study / "results.jsonl").read_text().splitlines()]
    searches = rows[0].get("searches") or {}
    if not searches:
        raise SystemExit(f"{args.study}: no search in this study (run configs/tuned_grid.yaml)")

    def show(pick: tuple[float, int, float] | None) -> str:
        return "none within the budget" if pick is None else f"lr {pick[0]:.3g} step {pick[1]} ({pick[2]:.1%})"

    same_all = True
    for name, search in searches.items():
        c = compare(rows, name, search)
        same = c["grid_curve"] is not None and c["search"] is not None and \
            math.isclose(c["grid_curve"][0], c["search"][0], rel_tol=1e-9) and c["grid_curve"][1] == c["search"][1]
        same_lr = c["search"] is not None and math.isclose(c["grid_final"][0], c["search"][0], rel_tol=1e-9)
        same_all = same_all and same
        print(f"{name}:")
        print(f"  grid, study's rule (last step, validation set): lr {c['grid_final'][0]:.3g} "
              f"({(c['grid_final'][1] or 0):.1%})")
        print(f"  grid, search's rule (best curve point):         {show(c['grid_curve'])}")
        print(f"  search:                                         {show(c['search'])}")
        if c["grid_point_at_search_pick"] is not None:
            print(f"  the grid run at the search's pick scored {c['grid_point_at_search_pick']:.1%} there "
                  f"(the search's cell: {c['search'][2]:.1%})")
        print(f"  steps: grid {c['grid_steps']}, search {c['search_steps']} "
              f"({c['search_steps'] / max(1, c['grid_steps']):.2f}x)")
        print(f"  same checkpoint as the grid by the search's rule: {'yes' if same else 'NO'}; "
              f"same learning rate as the grid's study pick: {'yes' if same_lr else 'NO'}")
    print(f"every method: {'the search picked the grid model' if same_all else 'at least one pick differs'}")


if __name__ == "__main__":
    main()
