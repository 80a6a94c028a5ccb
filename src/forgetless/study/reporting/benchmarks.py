"""Forgetting on lm-eval benchmarks: the per-task table, the aggregate, and the frontier's benchmark axis.

Rows carry each task's per-document scores (``items["lm_eval/TASK"]``), so every
figure here is recomputed from the rows. A task's forgetting is the base's score
minus the model's (for a metric where higher is better), so positive means worse on
every axis of the report. The aggregate is the mean of the tasks' forgetting; its
interval resamples each task's documents on their own (a stratified paired
bootstrap: tasks differ in size and in spread, and no document is in two tasks).
"""

from __future__ import annotations

import numpy as np

from forgetless.bootstrap import DEFAULT_CONFIDENCE
from forgetless.study.rows import Row, RowKind


def tasks_of(rows: list[Row]) -> list[str]:
    """The lm-eval tasks the rows were measured on (the base row's, in its order)."""
    base = next((r for r in rows if r["kind"] == RowKind.BASE), None)
    return list(base.get("lm_eval", {})) if base else []


def _scores(row: Row, task: str) -> np.ndarray:
    return np.asarray(row.get("items", {}).get(f"lm_eval/{task}", []), dtype=np.float64)


def aggregate_forgetting(row: Row, base: Row, tasks: list[str], resamples: int = 1000,
                         seed: int = 0) -> tuple[float, tuple[float, float]]:
    """The mean forgetting over ``tasks`` and its 95% stratified paired bootstrap interval.

    Each resample draws every task's documents with replacement (the same draw for the
    model and the base: the comparison is paired), takes each task's mean difference
    and averages over tasks.
    """
    rng = np.random.default_rng(seed)
    per_task, draws = [], np.zeros(resamples)
    for task in tasks:
        sign = -1.0 if row["lm_eval"][task].get("higher_is_better", True) else 1.0
        diff = sign * (_scores(row, task) - _scores(base, task))  # [n_task]
        per_task.append(diff.mean())
        picks = rng.integers(0, len(diff), size=(resamples, len(diff)))
        draws += diff[picks].mean(axis=1)
    draws /= len(tasks)
    tail = (1 - DEFAULT_CONFIDENCE) / 2
    return float(np.mean(per_task)), (float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail)))


def benchmark_table(rows: list[Row], resamples: int = 1000) -> list[list[str]] | None:
    """One line per base and trained model: each task's score and forgetting with its interval, then the
    aggregate; None when the study measured no lm-eval task."""
    tasks = tasks_of(rows)
    if not tasks:
        return None
    base = next(r for r in rows if r["kind"] == RowKind.BASE)
    header = ["model", *(f"{t} ({base['lm_eval'][t]['metric']})" for t in tasks), "mean forgetting"]
    table = [header]
    for row in rows:
        if row["kind"] not in (RowKind.BASE, RowKind.TRAINED) or "lm_eval" not in row:
            continue
        cells = [row["label"]]
        for task in tasks:
            t = row["lm_eval"][task]
            lo, hi = t["forgetting_ci"]
            cells.append(f"{t['score']:.3f}" if row is base else
                         f"{t['score']:.3f} ({t['forgetting']:+.3f} [{lo:+.3f}, {hi:+.3f}])")
        if row is base:
            cells.append("-")
        else:
            mean, (lo, hi) = aggregate_forgetting(row, base, tasks, resamples)
            cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        table.append(cells)
    return table


def on_axis(rows: list[Row], axis: str) -> list[Row]:
    """The rows with ``forgetting`` (and its interval) read from lm-eval task ``axis``; ``loss`` returns them as
    they are. Rows not measured on the task are left out."""
    if axis == "loss":
        return rows
    return [{**r, "forgetting": r["lm_eval"][axis]["forgetting"], "forgetting_ci": r["lm_eval"][axis]["forgetting_ci"]}
            for r in rows if axis in r.get("lm_eval", {})]
