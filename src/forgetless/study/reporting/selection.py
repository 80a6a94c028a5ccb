"""Every choice a study makes, made on validation scores only.

The model to ship, each method's learning rate and each sweep's alpha are chosen
by validation exact match (the mean over seeds); the test set then gives an
unbiased estimate of the chosen model. Choosing on the test set and reporting
the test score of the choice would overstate it (the maximum of noisy scores is
biased upwards; Cawley and Talbot, JMLR 11, 2010).

Ties in validation score go to the base (a fine-tuned model that scores no
higher on validation is not worth its forgetting), then to less forgetting, then
to the order of the config.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgetless.study.rows import Group, Row, RowKind, group_id, groups


@dataclass(frozen=True)
class Choice:
    """A chosen seed group (or None when nothing qualifies) and why."""

    group: Group | None
    reason: str


def _key(group: Group) -> tuple[float, bool, float]:
    return (group.validation_accuracy or 0.0, group.kind == RowKind.BASE, -group.mean("forgetting"))


def best_on_validation(candidates: list[Group]) -> Group | None:
    """The candidate with the highest mean validation exact match (ties: the base, less forgetting, then first)."""
    scored = [g for g in candidates if g.validation_accuracy is not None]
    if not scored:
        return None
    return max(scored, key=_key)  # max keeps the first of equal keys


def choose_model(rows: list[Row], budget: float) -> Choice:
    """The model to ship: the best validation exact match among the models within the forgetting budget.

    Every evaluated model competes (base, trained, sweep points, merges); the budget
    is checked on the mean held-out general loss increase over seeds.
    """
    every = groups(rows)
    if not any(g.validation_accuracy is not None for g in every):
        return Choice(None, "the results carry no validation scores (rerun the study to measure them)")
    eligible = [g for g in every if g.mean("forgetting") <= budget]
    if not eligible:
        least = min(every, key=lambda g: g.mean("forgetting"))
        return Choice(None, f"no model stays within the forgetting budget of {budget:.3g} nats/token; the least "
                            f"forgetting is `{least.label}` at {least.mean('forgetting'):+.3f}")
    pick = best_on_validation(eligible)
    return Choice(pick, f"highest validation exact match ({(pick.validation_accuracy or 0):.1%}) among "
                        f"{len(eligible)} models within the budget of {budget:.3g} nats/token")


def choose_learning_rates(rows: list[Row]) -> dict[str, Group]:
    """Each method's learning rate (its seed group of trained models) with the best validation exact match."""
    by_method: dict[str, list[Group]] = {}
    for group in groups(rows, RowKind.TRAINED):
        by_method.setdefault(str(group.get("method")), []).append(group)
    chosen = {name: best_on_validation(candidates) for name, candidates in by_method.items()}
    return {name: group for name, group in chosen.items() if group is not None}


def sweep_points(rows: list[Row], parent: Group, kind: RowKind) -> list[Group]:
    """The interior points (0 < alpha < 1) of one fine-tuned group's sweep of ``kind``, by alpha."""
    inner = [g for g in groups(rows, kind) if group_id(str(g.get("parent", ""))) == parent.id]
    return sorted(inner, key=lambda g: float(g.get("alpha")))


def choose_alpha(rows: list[Row], parent: Group, kind: RowKind, budget: float | None = None) -> Group | None:
    """The interior alpha of a sweep with the best validation exact match (within ``budget`` when given)."""
    points = sweep_points(rows, parent, kind)
    if budget is not None:
        points = [g for g in points if g.mean("forgetting") <= budget]
    return best_on_validation(points)
