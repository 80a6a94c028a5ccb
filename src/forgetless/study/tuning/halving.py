"""Successive halving for the search stage: Optuna's sampler proposes, Optuna's halving rule promotes.

Every tuned method gets the same budget (``StudyConfig.search``): ``trials`` settings
proposed up front by a seeded Optuna sampler (``GridSampler`` when every dimension is a
list of choices, else ``TPESampler``, which samples at random before any result is in),
trained to the first rung; at each rung the best ``1/η`` of the trials (at least one)
train on to the next rung (Jamieson and Talwalkar, AISTATS 2016; Li et al., "ASHA",
MLSys 2020). The rung steps are ``max_steps / η^(rungs-1-r)``: 3 rungs, η = 2 and 300
steps give 75, 150 and 300.

Rungs are synchronous: rung r's cells are declared only once every rung r-1 result is
read, so the trials promoted, and the cells a rerun finds, do not depend on the order
the executor finished them in. Optuna's ``SuccessiveHalvingPruner`` is asynchronous (a
trial is judged against those that reached its rung before it); each promotion is
therefore asked of a fresh in-memory Optuna study that holds every other trial's value
at that rung first, so each trial is judged against all of them by Optuna's own rule.

A trial's score at a rung is its best learning-curve point so far within the forgetting
budget (validation exact match on ``eval.curve_examples``; forgetting as the curve's
held-out loss minus step 0's); among equal exact matches the lower validation loss (the
gold completions' NLL on the same examples) ranks higher, since a task learned late
scores 0% at every early rung and exact match alone would then keep the trials that
forget least, which are the ones that learn slowest. A trial with no point within the
budget ranks below every trial with one, by its least forgetting. Remaining ties go to
the earlier trial, so exactly ``max(1, n // η)`` trials go on and every method trains
the same number of steps.
This module is pure (no torch): it reads curve points, never models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forgetless.study.rows import family_of
from forgetless.study.tuning.space import DEFAULT_PARAMS, Dimension, set_path

if TYPE_CHECKING:  # config imports this module lazily; the types only
    from forgetless.study.config import MethodConfig, StudyConfig

LR = "learning_rate"
# A score is exact match + LOSS_SHARE / (1 + validation loss) - TIE * trial number: the loss term (under 1e-4)
# is below any difference of two exact matches on fewer than 10,000 examples, and TIE (times fewer than 10^4
# trials) below any difference of two losses that matters, so the order is exact match, then loss, then trial.
LOSS_SHARE = 1e-4
TIE = 1e-9


@dataclass(frozen=True)
class Trial:
    """One proposal of one tuned method: its number, learning rate and the ``train`` keys it sets."""

    method: str
    number: int
    learning_rate: float
    params: tuple[tuple[str, Any], ...]  # (dotted train key, value), in the space's order

    def settings(self) -> dict[str, Any]:
        """``{"learning_rate": lr, key: value, ...}``, as the report states them."""
        return {LR: self.learning_rate, **dict(self.params)}

    @property
    def label(self) -> str:
        extra = "".join(f" {k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f" {k.rsplit('.', 1)[-1]}={v}"
                        for k, v in self.params)
        return f"{self.method} #{self.number} lr={self.learning_rate:.3g}{extra}"


def space(cfg: StudyConfig, method: MethodConfig) -> dict[str, Dimension]:
    """The dimensions a tuned method searches: ``learning_rate`` first, then its params (defaults under auto)."""
    assert method.search is not None
    params = dict(method.search.params)
    if not params and not method.search.learning_rate:  # `learning_rates: auto`: the family's key parameter
        family = method.family or family_of(method.train)
        params = {k: Dimension(**v) for k, v in DEFAULT_PARAMS.get(family or "", {}).items()}
    return {LR: method.search.learning_rate or cfg.search.learning_rate, **params}


def method_for(method: MethodConfig, trial: Trial) -> MethodConfig:
    """The method with the trial's params written into its ``train`` keys (a grid method of one learning rate)."""
    train = dict(method.train)
    for path, value in trial.params:
        train = set_path(train, path, value)
    return method.model_copy(update={"train": train, "learning_rates": [trial.learning_rate], "search": None})


def _distribution(dim: Dimension) -> Any:
    import optuna

    if dim.choices is not None:
        return optuna.distributions.CategoricalDistribution(dim.choices)
    assert dim.low is not None and dim.high is not None
    if dim.integer:
        return optuna.distributions.IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)


def new_study(dims: dict[str, Dimension], trials: int, seed: int) -> Any:
    """A fresh in-memory Optuna study with the seeded sampler of this space (see the module docstring)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if all(d.choices is not None for d in dims.values()):
        sampler: Any = optuna.samplers.GridSampler({k: list(d.choices or []) for k, d in dims.items()}, seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(trials, 10))
    return optuna.create_study(direction="maximize", sampler=sampler)


def propose(cfg: StudyConfig, method: MethodConfig) -> list[Trial]:
    """The method's ``search.trials`` proposals: asked of a seeded Optuna study, so every run proposes the same."""
    dims = space(cfg, method)
    study = new_study(dims, cfg.search.trials, cfg.search.seed)
    out = []
    for number in range(cfg.search.trials):
        asked = study.ask({k: _distribution(d) for k, d in dims.items()})
        params = tuple((k, asked.params[k]) for k in dims if k != LR)
        out.append(Trial(method.name, number, float(asked.params[LR]), params))
    return out


def rung_steps(cfg: StudyConfig) -> list[int]:
    """The step each rung ends at: ``max_steps / η^(rungs-1-r)``."""
    total, eta, rungs = cfg.training.get("max_steps", -1), cfg.search.reduction, cfg.search.rungs
    return [total // eta ** (rungs - 1 - r) for r in range(rungs)]


def planned_steps(cfg: StudyConfig) -> int:
    """Training steps each tuned method's search runs (the same for every method): the trials alive at each rung
    times the rung's steps, ``max(1, n // η)`` going on each time (fewer only when a trial diverges)."""
    alive, total, start = cfg.search.trials, 0, 0
    for end in rung_steps(cfg):
        total += alive * (end - start)
        alive, start = max(1, alive // cfg.search.reduction), end
    return total


def curve_points(cfg: StudyConfig) -> int:
    """The learning-curve points of a trial: at least ``eval.curve_points``, a multiple of η^(rungs-1) so that
    every rung ends on one (and a checkpoint is kept at each of them)."""
    unit = cfg.search.reduction ** (cfg.search.rungs - 1)
    return unit * max(1, math.ceil(cfg.eval.curve_points / unit))


def segment_ends(cfg: StudyConfig) -> list[int]:
    """The steps a trial's training stops at to keep a checkpoint: its curve points (every rung end among them)."""
    total, points = cfg.training["max_steps"], curve_points(cfg)
    return sorted({max(1, round(total * k / points)) for k in range(1, points + 1)})


def check_search(cfg: StudyConfig) -> None:
    """Refuse a study whose tuned methods cannot be searched (called when the config is validated).

    Raises:
        ValueError: a tuned method without ``training.max_steps``, a step count the rungs do not divide,
            or a tuned method as LM-Cocktail's fine-tuned model.
    """
    tuned = [m.name for m in cfg.methods if m.tuned]
    if not tuned:
        return
    total = cfg.training.get("max_steps", -1)
    unit = cfg.search.reduction ** (cfg.search.rungs - 1)
    if not isinstance(total, int) or total <= 0:
        raise ValueError(f"training.max_steps: tuned methods {tuned} need a step count (the rungs are fractions of "
                         "it), got none")
    if total % unit:
        raise ValueError(f"training.max_steps: {total} is not a multiple of reduction^(rungs-1) = {unit}; the rungs "
                         f"end at max_steps / {cfg.search.reduction}^k")
    if cfg.cocktail is not None and (cfg.cocktail.method or cfg.methods[0].name) in tuned:
        raise ValueError(f"cocktail.method: {cfg.cocktail.method or cfg.methods[0].name!r} is tuned; LM-Cocktail "
                         "starts from a method with a fixed learning rate")


def corner_configs(cfg: StudyConfig, method: MethodConfig) -> list[tuple[MethodConfig, float]]:
    """``(method, learning rate)`` at the low and high corner of its space (load_study validates both)."""
    dims = space(cfg, method)
    out = []
    for pick in (0, -1):
        values = {k: (d.choices[pick] if d.choices is not None else (d.low if pick == 0 else d.high))
                  for k, d in dims.items()}
        values = {k: (int(v) if dims[k].integer and v is not None else v) for k, v in values.items()}
        trial = Trial(method.name, -1, float(values[LR]), tuple((k, v) for k, v in values.items() if k != LR))
        out.append((method_for(method, trial), trial.learning_rate))
    return out


@dataclass(frozen=True)
class Point:
    """One kept checkpoint of a trial: its step, validation exact match, forgetting and validation loss on the
    curve's slices (loss ``inf`` where the curve has none: an answers-only validation set, an older cell)."""

    trial: int
    step: int
    validation: float
    forgetting: float
    validation_loss: float = math.inf

    @property
    def value(self) -> float:
        """Exact match, with ties ranked by the lower validation loss (see ``LOSS_SHARE``)."""
        return self.validation + LOSS_SHARE / (1.0 + self.validation_loss)


def choice_rank(point: Point) -> tuple[float, float, int, int]:
    """How the chosen checkpoint is ranked among those within the budget: validation exact match, then less
    forgetting, the earlier trial, the earlier step (``Outcome.chosen``, and each trial's best in the report)."""
    return point.validation, -point.forgetting, -point.trial, -point.step


def score(points: list[Point], step: int, budget: float, number: int) -> float:
    """A trial's value at ``step``: its best point so far within the budget (see the module docstring).

    Within the budget: the best ``Point.value`` (exact match, then loss); else ``-1 - least forgetting``
    (below every trial within it). Ties: ``TIE`` per trial number, the earlier trial first.
    """
    seen = [p for p in points if p.step <= step]
    within = [p.value for p in seen if p.forgetting <= budget]
    value = max(within) if within else -1.0 - min((p.forgetting for p in seen), default=math.inf)
    return max(value, -1e9) - TIE * number


def promoted(values: dict[int, float], reduction: int) -> list[int]:
    """The trials (by number) that go on from a rung where they scored ``values``, by Optuna's halving rule.

    For each trial, a fresh Optuna study records every other trial's value at the rung (through
    ``SuccessiveHalvingPruner`` itself), then asks the pruner about this one: it goes on when its value
    is among the best ``max(1, n // reduction)`` (see the module docstring).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keep = []
    for number, value in values.items():
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                    pruner=optuna.pruners.SuccessiveHalvingPruner(
                                        min_resource=1, reduction_factor=reduction, min_early_stopping_rate=0))
        for other, v in values.items():
            if other != number:
                trial = study.ask()
                trial.report(v, 1)
                trial.should_prune()  # records the value at rung 0; its own verdict is not the question
        trial = study.ask()
        trial.report(value, 1)
        if not trial.should_prune():
            keep.append(number)
    return sorted(keep)


@dataclass
class Outcome:
    """A method's search as far as its cells go: proposals, points, promotions and the chosen checkpoint."""

    trials: list[Trial]
    points: dict[int, list[Point]] = field(default_factory=dict)  # by trial number, step order
    alive: list[list[int]] = field(default_factory=list)  # alive[r]: trials that train through rung r
    diverged: dict[int, str] = field(default_factory=dict)
    seconds: dict[tuple[int, int], float] = field(default_factory=dict)  # (trial, step): its segment's training time
    finished: bool = False  # every rung's cells have been read

    def steps_used(self, number: int) -> int:
        """Training steps the trial ran (its last kept checkpoint's step)."""
        return max((p.step for p in self.points.get(number, [])), default=0)

    def chosen(self, budget: float) -> Point | None:
        """The best kept checkpoint of all trials: validation exact match within the budget (ties: less
        forgetting, the earlier trial, the earlier step); None when no checkpoint is within it."""
        within = [p for ps in self.points.values() for p in ps if p.forgetting <= budget]
        return max(within, key=choice_rank) if within else None


def advance(outcome: Outcome, rung: int, ends: list[int], budget: float, reduction: int) -> list[int]:
    """Record rung ``rung``'s promotions in ``outcome`` from the points read so far; return who goes on."""
    alive = [n for n in outcome.alive[rung] if n not in outcome.diverged]
    values = {n: score(outcome.points.get(n, []), ends[rung], budget, n) for n in alive}
    return promoted(values, reduction) if values else []


def edges(dims: dict[str, Dimension], settings: dict[str, Any]) -> list[str]:
    """Warnings for chosen settings at the edge of their searched range (``"learning_rate at the high edge ..."``)."""
    out = []
    for key, dim in dims.items():
        where = dim.edge(settings.get(key))
        if where:
            shown = f"{settings[key]:.3g}" if isinstance(settings[key], float) else str(settings[key])
            out.append(f"{key} = {shown} lies at the {where} edge of the searched range {dim.describe()}: "
                       "widen the range, the best may lie beyond it")
    return out
