"""A forgetting budget: the α that maximizes the domain metric on validation data subject
to general forgetting ≤ ε.

Forgetting at α is the rise of the held-out general code length over the base model's
(α = 0): F(α) = L_gen(α) − L_gen(0) in nats per token, or 100 · F(α) / L_gen(0) in
percent of the base. Among the α with F(α) ≤ ε the one with the highest domain exact
match wins; ties go to the smaller forgetting, then to the smaller α.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from forgetless.merging.errors import MergeError

Unit = Literal["nats", "percent"]


@dataclass(frozen=True)
class BudgetChoice:
    """The chosen point (None when no α meets the budget) and the curve with forgetting added."""

    chosen: dict[str, Any] | None
    curve: list[dict[str, Any]]
    budget: float
    unit: Unit

    def summary(self) -> str:
        """One plain sentence about the outcome."""
        unit = "nats/token" if self.unit == "nats" else "% of the base's general loss"
        if self.chosen is None:
            least = min(self.curve, key=lambda p: p["forgetting"])
            return (f"no alpha meets the budget of {self.budget:g} {unit}: the least forgetting on the curve is "
                    f"{least['forgetting']:.4g} at alpha={least['alpha']:g}")
        c = self.chosen
        base = next(p for p in self.curve if p["alpha"] == 0)
        gain = c["exact_match"] - base["exact_match"]
        verdict = (f"{gain:+.4f} over the base" if gain > 0
                   else "no domain gain over the base is possible within this budget")
        return (f"alpha={c['alpha']:g} meets the budget of {self.budget:g} {unit} with forgetting "
                f"{c['forgetting']:.4g} and the best domain exact match among those that do: {c['exact_match']:.4f} "
                f"({verdict})")


def choose_alpha(curve: list[dict[str, Any]], budget: float, unit: Unit = "nats") -> BudgetChoice:
    """Pick the α of ``curve`` with the best domain metric whose forgetting is within ``budget``.

    Args:
        curve: points with ``alpha``, ``general_nats`` (nats/token on held-out general text)
            and ``exact_match`` (domain validation); must include α = 0, the reference.
        budget: ε, in ``unit``; negative means the general loss must *improve* by |ε|.
        unit: ``"nats"`` (nats per token) or ``"percent"`` (of the base's general loss).

    Returns:
        The choice and the curve with ``forgetting`` and ``within_budget`` on every point.
    """
    if not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise MergeError(f"budget={budget}: expected a finite number")
    if unit not in ("nats", "percent"):
        raise MergeError(f"budget unit {unit!r}: expected 'nats' or 'percent'")
    reference = [p for p in curve if p["alpha"] == 0]
    if not reference:
        raise MergeError("the curve needs alpha=0 (the base model), the reference forgetting is measured from")
    base = reference[0]["general_nats"]
    points = []
    for point in curve:
        forgetting = point["general_nats"] - base
        if unit == "percent":
            forgetting = 100.0 * forgetting / base
        points.append({**point, "forgetting": forgetting, "within_budget": forgetting <= budget})
    feasible = [p for p in points if p["within_budget"]]
    chosen = max(feasible, key=lambda p: (p["exact_match"], -p["forgetting"], -p["alpha"])) if feasible else None
    return BudgetChoice(chosen, points, float(budget), unit)
