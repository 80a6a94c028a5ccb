"""The search stage: every tuned method's settings found by successive halving, its best checkpoint evaluated.

``run_search`` runs before the study's graph (``forgetless.study.running.runner.run_study``): the search is
adaptive, so it declares its cells rung by rung, each rung a graph run on the study's
executor (serial, local workers or Ray), the next rung's cells declared once the
previous rung's results are read (``forgetless.study.tuning.halving``). Every trial segment is
a cell (``forgetless.study.running.search_cells``), so a killed search resumes: the proposals
come from a seeded sampler, the promotions from the cells' curve points, and a rerun
declares the same cells and finds them done.

The stage itself (``SearchStage``) then evaluates each tuned method's chosen model (its
best checkpoint within the forgetting budget) and makes its row: a ``trained`` row with
the chosen settings, the step it was taken at and the whole search (``search``: every
trial's settings, validation score, forgetting and steps used; the searched ranges; the
edge-of-range warnings), which the report's search section and the seed claims read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forgetless.study.config import MethodConfig, StudyConfig
from forgetless.study.rows import Row, RowKind, family_of
from forgetless.study.running.context import Context
from forgetless.study.running.graph import Graph, Work
from forgetless.study.running.model_cells import eval_task_id, eval_work, evaluate, make_row, plain_sft
from forgetless.study.running.replay_cells import REPLAY_SOURCES, replay_sources
from forgetless.study.running.stages import Planned
from forgetless.study.running.stages.trained import REPLAY_SAMPLES, replay_samples_task
from forgetless.study.running.tasks import ContextSpec, context_for, spec_of
from forgetless.study.running.search_cells import release_checkpoint, segment_cell, segment_points, train_segment
from forgetless.study.tuning.halving import (Outcome, Point, Trial, advance, choice_rank, edges, method_for, propose,
                                             rung_steps, segment_ends, space)


def tuned_methods(cfg: StudyConfig) -> list[MethodConfig]:
    """The study's tuned methods, in the config's order."""
    return [m for m in cfg.methods if m.tuned]


def segment_task(spec: ContextSpec, method: MethodConfig, trial: Trial, until: int, previous: int | None) -> None:
    """Train one segment of one trial (resuming from the previous segment's checkpoint)."""
    train_segment(context_for(spec), method, trial, until, previous)


def segment_work(cfg: StudyConfig, steps: int) -> Work:
    """What one trial segment costs: its steps and the learning-curve point at its end."""
    return Work("train", steps=steps, answers=cfg.eval.curve_examples, texts=cfg.eval.curve_documents)


def _segments(cfg: StudyConfig, rung: int) -> list[tuple[int, int | None]]:
    """``(until, previous)`` of each segment of rung ``rung``: the curve points in (previous rung end, rung end]."""
    ends, rungs = segment_ends(cfg), rung_steps(cfg)
    start = rungs[rung - 1] if rung else 0
    inside = [e for e in ends if start < e <= rungs[rung]]
    return [(e, ([x for x in ends if x < e] or [None])[-1]) for e in inside]


def outcome(ctx: Context, method: MethodConfig) -> Outcome:
    """How far the method's search has gone, read from its cells (nothing is trained here).

    Rung r's promotions are made only once every rung-r cell of the trials alive there is finished.
    """
    cfg = ctx.cfg
    out = Outcome(propose(cfg, method))
    trials = {t.number: t for t in out.trials}
    out.alive = [sorted(trials)]
    rungs = rung_steps(cfg)
    for rung in range(len(rungs)):
        for number in out.alive[rung]:
            for until, previous in _segments(cfg, rung):
                unit = segment_cell(ctx, method, trials[number], until, record=False)[0]  # a lookup only
                if number in out.diverged:
                    break
                if not unit.done():
                    return out
                result = unit.load()
                out.seconds[(number, until)] = result.get("seconds") or 0.0
                if result.get("diverged"):
                    out.diverged[number] = str(result["diverged"])
                    break
                out.points.setdefault(number, []).extend(segment_points(result, number, previous or 0))
        if rung + 1 < len(rungs):
            out.alive.append(advance(out, rung, rungs, cfg.budget, cfg.search.reduction))
    out.finished = True
    return out


def run_search(ctx: Context, run_graph: Callable[[Graph], None], print_fn: Callable[[str], None] = print) -> None:
    """Run every tuned method's search, rung by rung (each rung one graph, given to ``run_graph``).

    ``run_graph`` runs a graph on the study's executor (``executor.run(graph, logs, print_fn)``).
    """
    tuned = tuned_methods(ctx.cfg)
    if not tuned:
        return
    spec = spec_of(ctx)
    for rung in range(ctx.cfg.search.rungs):
        states = {m.name: outcome(ctx, m) for m in tuned}
        if rung:
            freed = sum(release_stopped(ctx, m, states[m.name], rung - 1) for m in tuned)
            if freed:
                print_fn(f"[search] removed {freed / 1e9:.2f} GB of Trainer checkpoints of trials halving stopped at "
                         f"step {rung_steps(ctx.cfg)[rung - 1]} (nothing resumes from them; their models stay)")
        # A method whose earlier rung is not finished (a cell failed, as the executor has said) sits this one out.
        alive = {name: [n for n in state.alive[rung] if n not in state.diverged]
                 for name, state in states.items() if rung < len(state.alive)}
        graph = rung_graph(ctx, spec, rung, {name: state.trials for name, state in states.items()}, alive)
        print_fn(f"[search] rung {rung + 1}/{ctx.cfg.search.rungs}: {sum(map(len, alive.values()))} trials of "
                 f"{len(tuned)} methods to step {rung_steps(ctx.cfg)[rung]}")
        run_graph(graph)


def release_stopped(ctx: Context, method: MethodConfig, state: Outcome, rung: int) -> int:
    """Remove the Trainer checkpoints that the trials halving stopped after rung ``rung`` kept at its end (only a
    promoted trial's next segment resumes from one); returns the bytes freed (0 before the promotions are made)."""
    if len(state.alive) <= rung + 1:
        return 0
    end = rung_steps(ctx.cfg)[rung]
    stopped = [n for n in state.alive[rung] if n not in state.alive[rung + 1] and n not in state.diverged]
    trials = {t.number: t for t in state.trials}
    return sum(release_checkpoint(ctx, method, trials[n], end) for n in stopped)


def planned_rungs(ctx: Context) -> list[Graph]:
    """Every rung's graph as ``run_search`` will declare it, before anything is trained (for the dry run):
    as many trials as the halving keeps at each rung (which ones does not change the cost), the replay
    samples in the first rung only (later rungs find them made)."""
    tuned = tuned_methods(ctx.cfg)
    trials = {m.name: propose(ctx.cfg, m) for m in tuned}
    kept = {name: len(proposed) for name, proposed in trials.items()}
    graphs = []
    for rung in range(ctx.cfg.search.rungs):
        graphs.append(rung_graph(ctx, spec_of(ctx), rung, trials, {n: list(range(k)) for n, k in kept.items()},
                                 replay_cells=rung == 0))
        kept = {n: max(1, k // ctx.cfg.search.reduction) for n, k in kept.items()}  # halving.promoted's count
    return graphs


def rung_graph(ctx: Context, spec: ContextSpec, rung: int, trials: dict[str, list[Trial]],
               alive: dict[str, list[int]], replay_cells: bool = True) -> Graph:
    """Rung ``rung``'s cells: every segment, up to the rung's end, of the trials ``alive[method name]`` (numbers
    into ``trials[method name]``), after the replay samples they train on (``replay_cells``: declare those too)."""
    tuned = [m for m in tuned_methods(ctx.cfg) if m.name in alive]
    graph = Graph()
    replay = {}
    for kind in REPLAY_SOURCES:  # the replay samples the tuned methods train on (the study's own cells)
        if replay_cells and any(kind in replay_sources(m) for m in tuned):
            task = REPLAY_SAMPLES if kind == "context-free" else f"{REPLAY_SAMPLES}/{kind}"
            replay[kind] = graph.add(task, f"make the {kind} replay samples", replay_samples_task, (spec, kind),
                                     work=Work("samples", samples=0 if kind == "corpus"
                                               else ctx.cfg.context_free.replay_samples))
    for method in tuned:
        for number in alive[method.name]:
            trial = trials[method.name][number]
            deps = [replay[k] for k in replay_sources(method) if k in replay]
            for until, previous in _segments(ctx.cfg, rung):
                task = graph.add(f"search/{method.name}/trial={number}/step={until}",
                                 f"train {trial.label} to step {until}", segment_task,
                                 (spec, method, trial, until, previous), deps, gpu=True,
                                 work=segment_work(ctx.cfg, until - (previous or 0)))
                deps = [task]
    return graph


def chosen_cell(ctx: Context, method: MethodConfig, state: Outcome) -> tuple[Trial, Point, Any] | None:
    """The chosen checkpoint's trial, point and cell, or None when the search is unfinished or nothing is within
    the budget."""
    if not state.finished:
        return None
    point = state.chosen(ctx.cfg.budget)
    if point is None:
        return None
    trial = state.trials[point.trial]
    return trial, point, segment_cell(ctx, method, trial, point.step)[0]


def _label(trial: Trial, point: Point) -> str:
    """A tuned model's label in the report: ``talr (tuned) lr=0.00082 step 300``."""
    return f"{trial.method} (tuned) lr={trial.learning_rate:.3g} step {point.step}"


def search_eval_task(spec: ContextSpec, method: MethodConfig) -> None:
    """Evaluate a tuned method's chosen checkpoint."""
    ctx = context_for(spec)
    picked = chosen_cell(ctx, method, outcome(ctx, method))
    if picked is not None:
        trial, point, unit = picked
        path = str(unit.dir / "model")
        evaluate(ctx, {"model": unit.key}, _label(trial, point), lambda: ctx.load_model(path))


def halvings(state: Outcome, rungs: list[int]) -> list[dict[str, Any]]:
    """Each rung after which halving stopped a trial: its step, the trials it compared, each one's best validation
    exact match so far (any forgetting) and which went on; the report warns when none had learned the task there."""
    out = []
    for rung, kept in enumerate(state.alive[1:]):
        compared = [n for n in state.alive[rung] if n not in state.diverged]
        if len(kept) == len(compared):
            continue
        out.append({"step": rungs[rung], "trials": [
            {"number": n, "kept": n in kept,
             "validation": max((p.validation for p in state.points.get(n, []) if p.step <= rungs[rung]), default=0.0)}
            for n in compared]})
    return out


def search_record(ctx: Context, method: MethodConfig, state: Outcome) -> dict[str, Any]:
    """What the report says of one method's search: the budget, the ranges, every trial, the choice."""
    cfg, dims = ctx.cfg, space(ctx.cfg, method)
    trials = []
    for trial in state.trials:
        points = state.points.get(trial.number, [])
        # The trial's checkpoint that the choice ranks first (exact match, then less forgetting).
        best = max((p for p in points if p.forgetting <= cfg.budget), key=choice_rank, default=None)
        last = points[-1] if points else None
        trials.append({"number": trial.number, "settings": trial.settings(),
                       "steps": state.steps_used(trial.number),
                       "validation": (best or last).validation if (best or last) else None,
                       "forgetting": (best or last).forgetting if (best or last) else None,
                       "best_step": best.step if best else None, "diverged": state.diverged.get(trial.number),
                       "rungs": sum(trial.number in alive for alive in state.alive)})
    picked = state.chosen(cfg.budget)
    settings = state.trials[picked.trial].settings() if picked else None
    rungs = rung_steps(cfg)
    return {"trials": trials, "rungs": rungs, "halvings": halvings(state, rungs),
            "seconds": sum(state.seconds.values()),
            "finished": state.finished,
            "reduction": cfg.search.reduction, "seed": cfg.search.seed,
            "space": {k: d.describe() for k, d in dims.items()},
            "steps": sum(t["steps"] for t in trials), "budget": cfg.budget,
            "chosen": None if picked is None else {"trial": picked.trial, "step": picked.step, "settings": settings,
                                                  "validation": picked.validation, "forgetting": picked.forgetting},
            "edges": edges(dims, settings) if settings else []}


class SearchStage:
    """One ``trained`` row per tuned method: its chosen checkpoint, with the whole search in ``search``."""

    name = "search"

    def weight(self, cfg: StudyConfig) -> float:
        return 1.0 * len(tuned_methods(cfg))  # the chosen models' evaluations (the search reports its own progress)

    def plan(self, ctx: Context, graph: Graph, planned: Planned) -> list[str]:
        spec, ids = spec_of(ctx), []
        for method in tuned_methods(ctx.cfg):
            if chosen_cell(ctx, method, outcome(ctx, method)) is not None:  # a dry run before the search: none
                ids.append(graph.add(eval_task_id(f"{method.name}/tuned"), f"evaluate {method.name} (tuned)",
                                     search_eval_task, (spec, method), planned.before_eval, work=eval_work(ctx.cfg)))
        return ids

    def rows(self, ctx: Context) -> list[Row]:
        rows = []
        for method in tuned_methods(ctx.cfg):
            state = outcome(ctx, method)
            record = search_record(ctx, method, state)
            if ctx.rows:  # every search, chosen or not, on the base row: the report's search section reads it there
                ctx.rows[0].setdefault("searches", {})[method.name] = record
            picked = chosen_cell(ctx, method, state)
            if picked is None:
                continue
            trial, point, unit = picked
            path, label = str(unit.dir / "model"), _label(trial, point)
            m = evaluate(ctx, {"model": unit.key}, label, lambda p=path: ctx.load_model(p))
            run = method_for(method, trial)
            seconds = [t for (number, step), t in state.seconds.items()
                       if number == trial.number and step <= point.step]
            rows.append(make_row(ctx, f"{method.name}/lr={trial.learning_rate:g}/seed={ctx.cfg.seeds[0]}", label,
                                 RowKind.TRAINED, m, method=method.name, learning_rate=trial.learning_rate,
                                 seed=ctx.cfg.seeds[0], train_seconds=sum(seconds),
                                 trained_on=unit.load().get("machine"), curve=unit.load().get("curve") or [],
                                 path=path, plain_sft=plain_sft(run), family=method.family or family_of(run.train),
                                 tuned=True, step=point.step, settings=trial.settings()))
        return rows
