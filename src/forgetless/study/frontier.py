"""The trade-off frontier and the recommendation, computed from result rows alone.

Every evaluated model is a point (forgetting, gain): forgetting is the rise of
held-out general loss over the base (nats/token, lower is better), gain is the
rise of domain exact-match accuracy over the base (higher is better). A point is
on the Pareto front when no other point forgets no more, gains no less, and is
strictly better in one of the two.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def pareto_front(rows: list[Row]) -> list[Row]:
    """Rows not dominated by any other row, sorted by forgetting (ascending).

    Args:
        rows: result rows with numeric ``forgetting`` and ``gain``.
    """
    front = []
    for row in rows:
        dominated = any(
            other["forgetting"] <= row["forgetting"]
            and other["gain"] >= row["gain"]
            and (other["forgetting"] < row["forgetting"] or other["gain"] > row["gain"])
            for other in rows
        )
        if not dominated:
            front.append(row)
    return sorted(front, key=lambda r: (r["forgetting"], -r["gain"]))


def recommend(rows: list[Row], budget: float, score: str = "gain") -> tuple[Row | None, str]:
    """The row to ship: the highest ``score`` among rows whose forgetting is within ``budget``.

    Ties go to less forgetting. The base model (forgetting 0, gain 0) is eligible:
    if nothing beats it within the budget, the honest recommendation is not to ship
    a fine-tuned model at all.

    Returns:
        ``(row or None, reason)``: None when no row meets the budget.
    """
    eligible = [r for r in rows if r["forgetting"] <= budget]
    if not eligible:
        least = min(rows, key=lambda r: r["forgetting"])
        return None, (
            f"no model stays within the forgetting budget of {budget:.3g} nats/token; "
            f"the least forgetting is {least['label']} at {least['forgetting']:+.3f}"
        )
    best = max(eligible, key=lambda r: (r[score], -r["forgetting"]))
    return best, f"highest {score} among {len(eligible)} models within the budget of {budget:.3g} nats/token"


def overadaptation(rows: list[Row], parent_id: str) -> dict[str, Any] | None:
    """Does an interpolation strictly inside (0, 1) beat the fine-tuned model on its own domain?

    The over-adaptation check of arXiv 2506.01901, on the rows of one sweep.

    Returns:
        ``{"parent", "best_alpha", "best_accuracy", "finetuned_accuracy", "beats"}``,
        or None when the sweep has no interior points.
    """
    parent = next((r for r in rows if r["id"] == parent_id), None)
    inner = [r for r in rows if r.get("parent") == parent_id and r["kind"] == "interpolation"]
    if parent is None or not inner:
        return None
    best = max(inner, key=lambda r: (r["domain_accuracy"], -r["forgetting"]))
    return {
        "parent": parent["label"],
        "best_alpha": best["alpha"],
        "best_accuracy": best["domain_accuracy"],
        "finetuned_accuracy": parent["domain_accuracy"],
        "beats": best["domain_accuracy"] > parent["domain_accuracy"],
    }
