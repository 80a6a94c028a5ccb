"""The trade-off frontier, computed from result rows alone
(the recommendation: ``forgetless.study.reporting.verdicts``).

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
