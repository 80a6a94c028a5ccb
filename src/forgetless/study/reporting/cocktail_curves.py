"""LM-Cocktail in the report: its α curve beside WiSE-FT's, and the point the headline table shows.

The rows come from the LM-Cocktail stage (``forgetless.study.running.stages.cocktail_sweep``);
everything here is a function of the result rows alone.
"""

from __future__ import annotations

from forgetless.study.rows import Row, RowKind

# The α of the headline table: `forgetless merge --rule cocktail`'s default, the midpoint
# between the fine-tuned model and the mix (the whole curve is in the LM-Cocktail section).
HEADLINE_ALPHA = 0.5


def cocktail_curve(rows: list[Row], base: Row, parent: Row) -> list[Row]:
    """One parent's cocktail rows by α, from α = 0 (the mix; the base when there is no α = 0 row)
    to α = 1 (the fine-tuned model itself); empty when the parent has no cocktail rows."""
    inner = sorted((r for r in rows if r.get("parent") == parent["id"] and r["kind"] == RowKind.COCKTAIL),
                   key=lambda r: r["alpha"])
    if not inner:
        return []
    start = [] if inner[0]["alpha"] == 0 else [{**base, "alpha": 0.0}]
    return [*start, *inner, {**parent, "alpha": 1.0}]


def headline_cocktails(rows: list[Row]) -> list[Row]:
    """Per cocktail sweep, the row whose α is nearest ``HEADLINE_ALPHA``: the one the headline table shows."""
    picked: dict[str, Row] = {}
    for r in rows:
        if r["kind"] == RowKind.COCKTAIL and r["alpha"] > 0:
            best = picked.get(r["parent"])
            if best is None or abs(r["alpha"] - HEADLINE_ALPHA) < abs(best["alpha"] - HEADLINE_ALPHA):
                picked[r["parent"]] = r
    return list(picked.values())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _wise_ft(rows: list[Row], base: Row, parent: Row) -> dict[float, Row]:
    points = {r["alpha"]: r for r in rows if r.get("parent") == parent["id"] and r["kind"] == RowKind.INTERPOLATION}
    return {0.0: base, **points, 1.0: parent}


def cocktail_sections(rows: list[Row]) -> list[tuple[str, str, str | None]]:
    """The report's LM-Cocktail section: weights, then the α curve beside WiSE-FT's at the same α."""
    base = next((r for r in rows if r["kind"] == RowKind.BASE), None)
    parents = [r for r in rows if r["kind"] == RowKind.TRAINED and any(
        x["kind"] == RowKind.COCKTAIL and x.get("parent") == r["id"] for x in rows)]
    if base is None or not parents:
        return []
    parts = []
    for parent in parents:
        curve = cocktail_curve(rows, base, parent)
        first = curve[1] if curve[0]["kind"] != RowKind.COCKTAIL else curve[0]
        weights = ", ".join(f"{k} {v:.3f}" for k, v in first.get("weights", {}).items())
        losses = ", ".join(f"{k} {v:.3f}" for k, v in first.get("losses", {}).items())
        inside = "every model, the fine-tuned one too (a variant)" if first.get("candidates") == "all" \
            else "the base and the peers"
        text = (f"`{parent['label']}` with {_count(len(first.get('peers', [])), 'peer')}: theta = alpha theta_ft + "
                f"(1 - alpha) sum_i w_i theta_i, w = softmax(-L/T) over {inside}, T = {first.get('temperature', 5):g}: "
                f"weights {weights}" + (f" (losses on the target examples, {first.get('loss', 'tokens')} "
                                        f"convention: {losses})" if losses else "") + ".")
        wise = _wise_ft(rows, base, parent)
        table = [["alpha", "cocktail domain EM", "cocktail forgetting", "WiSE-FT domain EM", "WiSE-FT forgetting"]]
        for point in curve:
            other = wise.get(point["alpha"])
            table.append([f"{point['alpha']:g}", f"{point['domain_accuracy']:.1%}", f"{point['forgetting']:+.3f}",
                          f"{other['domain_accuracy']:.1%}" if other else "-",
                          f"{other['forgetting']:+.3f}" if other else "-"])
        head, *body = table
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]
        parts.append(text + "\n\n" + "\n".join(lines))
    note = ("\n\nAlpha 1 is the fine-tuned model for both; alpha 0 is the base for WiSE-FT and the weighted mix of "
            "the base and the peers for LM-Cocktail (no fine-tuned model). Forgetting in nats/token against the base.")
    # The alpha-curves figure (both curves) is shown with the WiSE-FT section when there is one.
    image = None if any(r["kind"] == RowKind.INTERPOLATION for r in rows) else "alpha_curves.png"
    return [("LM-Cocktail", "\n\n".join(parts) + note, image)]
