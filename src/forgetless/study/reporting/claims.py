"""The seed claims of forgetless, each judged on a study's rows with the paired interval it rests on.

Verdicts: *reproduced* when the interval(s) lie on the claim's side of 0,
*not reproduced* when they lie on the other side, *inconclusive* when an interval
includes 0 (or the comparison is not at matched domain gain), *not run* when the
study lacks the models. Every choice inside a claim (which learning rate, which
alpha, which point of a curve is matched, which LM-Cocktail alpha > 0) is made on
validation scores; the intervals are on the test set (domain) and the held-out general
documents.

The claims and their sources:

- SFT at a high learning rate forgets; a smaller learning rate forgets less at
  comparable gain (arXiv 2509.20758).
- TALR retains more general ability than L2-SP, FLOW, LoRA and weight averaging at
  matched domain gain.
- Context-free replay beats contextual and corpus replay (arXiv 2505.13811).
- Some alpha in (0, 1) beats the fine-tuned model in-domain, for weights (WiSE-FT,
  arXiv 2109.01903) and for outputs (the over-adaptation of arXiv 2506.01901).
- LM-Cocktail restores general ability at near-equal domain score (arXiv 2311.13534).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from forgetless.study.reporting.paired import difference
from forgetless.study.rows import Group, Row, RowKind, base_group, group_id, groups
from forgetless.study.reporting.selection import best_on_validation, choose_alpha, sweep_points

Verdict = Literal["reproduced", "not reproduced", "inconclusive", "not run"]


@dataclass(frozen=True)
class Claim:
    """One row of the claims table."""

    claim: str
    verdict: Verdict
    evidence: str


def _trained(rows: list[Row], family: str, prefer_tuned: bool = True) -> list[Group]:
    """The family's trained models; only its tuned ones when the study tuned it and ``prefer_tuned`` (the search
    stage's choice is the method at its best, which a hand-picked learning rate beside it is not). The claims
    about SFT's learning rates compare rates: they take every SFT model."""
    found = [g for g in groups(rows, RowKind.TRAINED) if g.get("family") == family]
    tuned = [g for g in found if g.get("tuned")] if prefer_tuned else []
    return tuned or found


def _curve(rows: list[Row], parents: list[Group]) -> list[Group]:
    """A method's points on the frontier: its trained models and their WiSE-FT interpolations."""
    ids = {p.id for p in parents}
    inner = [g for g in groups(rows, RowKind.INTERPOLATION) if group_id(str(g.get("parent", ""))) in ids]
    return [*parents, *inner]


def _matched(reference: Group, points: list[Group]) -> Group:
    """The point whose validation exact match is closest to the reference's (ties: less forgetting)."""
    target = reference.validation_accuracy or 0.0
    return min(points, key=lambda g: (abs((g.validation_accuracy or 0.0) - target), g.mean("forgetting")))


def retention(better: Group, other: Group, base: Group, resamples: int) -> tuple[Verdict, str]:
    """Does ``better`` forget less than ``other`` without gaining less on the domain?

    Matching gains means something only where there is a gain: when neither model
    gains over the base (its test interval above 0), the comparison is inconclusive
    whatever the forgetting. Otherwise: reproduced: the forgetting difference (other - better) lies above 0 and the gain
    difference (better - other) does not lie below 0. Not reproduced: ``other``
    forgets significantly less and ``better`` does not gain significantly more.
    Anything else (an interval through 0, or a trade of gain for retention) is
    inconclusive: the two are not compared at matched gain.
    """
    forget = difference(other, better, "general", resamples)  # > 0: `better` forgets less
    gain = difference(better, other, "test", resamples)  # > 0: `better` gains more
    text = (f"`{better.label}` vs `{other.label}`: general loss {forget.text('+.3f')} nats/token lower, "
            f"domain EM {gain.text('+.1%')}")
    if all(difference(g, base, "test", resamples).verdict != "win" for g in (better, other)):
        return "inconclusive", text + " (neither gains on the domain over the base: no gain to match)"
    if forget.low > 0 and gain.high >= 0:
        return "reproduced", text
    if forget.high < 0 and gain.low <= 0:
        return "not reproduced", text
    if forget.verdict != "indistinguishable" and gain.verdict != "indistinguishable":
        return "inconclusive", text + " (one gains more, the other forgets less: not at matched gain)"
    return "inconclusive", text


def _missing(claim: str, what: str) -> Claim:
    return Claim(claim, "not run", f"the study has no {what}")


def _sft_high_lr_forgets(rows: list[Row], resamples: int) -> Claim:
    claim = "SFT at a high learning rate forgets"
    sft = _trained(rows, "sft", prefer_tuned=False)
    if not sft:
        return _missing(claim, "plain SFT model")
    high = max(sft, key=lambda g: float(g.get("learning_rate")))
    d = difference(high, base_group(rows), "general", resamples)
    verdict: Verdict = "reproduced" if d.low > 0 else "not reproduced" if d.high < 0 else "inconclusive"
    return Claim(claim, verdict, f"`{high.label}`: general loss {d.text('+.3f')} nats/token over the base")


def _smaller_lr(rows: list[Row], resamples: int) -> Claim:
    claim = "A smaller learning rate forgets less at comparable gain (SFT)"
    sft = _trained(rows, "sft", prefer_tuned=False)
    rates = sorted({float(g.get("learning_rate")) for g in sft})
    if len(rates) < 2:
        return _missing(claim, "plain SFT at two learning rates")
    high = max((g for g in sft if float(g.get("learning_rate")) == rates[-1]), key=lambda g: g.validation_accuracy or 0)
    small = best_on_validation([g for g in sft if float(g.get("learning_rate")) < rates[-1]])
    if small is None:
        return _missing(claim, "validation scores")
    verdict, text = retention(small, high, base_group(rows), resamples)
    return Claim(claim, verdict, text)


def _retains_more(rows: list[Row], claim: str, family: str, others: dict[str, list[Group]],
                  resamples: int) -> list[Claim]:
    """One claim per comparator: ``family``'s validation-best model against the comparator's matched point."""
    reference = best_on_validation(_trained(rows, family))
    out = []
    for name, points in others.items():
        text = claim.format(other=name)
        if reference is None:
            out.append(_missing(text, f"{family} model"))
        elif not points:
            out.append(_missing(text, f"{name} model"))
        else:
            verdict, evidence = retention(reference, _matched(reference, points), base_group(rows), resamples)
            out.append(Claim(text, verdict, evidence))
    return out


def _alpha_beats(rows: list[Row], kind: RowKind, resamples: int) -> Claim:
    what = "weights (WiSE-FT)" if kind == RowKind.INTERPOLATION else "outputs (ensemble)"
    claim = f"Some alpha in (0, 1) beats the fine-tuned model in-domain: {what}"
    parents = [g for g in groups(rows, RowKind.TRAINED) if sweep_points(rows, g, kind)]
    if not parents:
        return _missing(claim, f"{kind.value} sweep")
    # The sweep of plain SFT when there is one: the claim is about the fine-tuned model of the papers.
    parent = best_on_validation([g for g in parents if g.get("family") == "sft"] or parents)
    point = choose_alpha(rows, parent, kind) if parent is not None else None
    if parent is None or point is None:
        return _missing(claim, "validation scores")
    d = difference(point, parent, "test", resamples)
    verdict: Verdict = "reproduced" if d.low > 0 else "not reproduced" if d.high < 0 else "inconclusive"
    return Claim(claim, verdict, f"`{point.label}` (alpha {float(point.get('alpha')):g}, chosen on validation) vs "
                                 f"`{parent.label}`: domain EM {d.text('+.1%')}")


def _cocktail(rows: list[Row], resamples: int) -> Claim:
    claim = "LM-Cocktail restores general ability at near-equal domain score"
    cocktails = groups(rows, RowKind.COCKTAIL)
    if not cocktails:
        return _missing(claim, "LM-Cocktail model")
    parents = {g.id: g for g in groups(rows, RowKind.TRAINED)}
    # The claim is about the fine-tuned model mixed with the others (alpha > 0); alpha 0 is the mix
    # without it. Which alpha is a choice, so it is made on validation like every other.
    mixed = [g for g in cocktails if (g.get("alpha") or 0.0) > 0.0]
    cocktail = best_on_validation(mixed) or best_on_validation(cocktails) or cocktails[0]
    parent = parents.get(group_id(str(cocktail.get("parent", ""))))
    if parent is None:
        return _missing(claim, "fine-tuned model under the LM-Cocktail")
    verdict, text = retention(cocktail, parent, base_group(rows), resamples)
    return Claim(claim, verdict, text)


def seed_claims(rows: list[Row], resamples: int = 1000) -> list[Claim]:
    """Every seed claim judged on ``rows`` (one claim per comparator where a claim names several)."""
    sft = _trained(rows, "sft", prefer_tuned=False)  # its WiSE-FT sweeps: tuned models are not swept
    claims = [_sft_high_lr_forgets(rows, resamples), _smaller_lr(rows, resamples)]
    comparators = {name: _curve(rows, _trained(rows, name)) for name in ("l2sp", "flow", "lora")}
    comparators["averaging"] = [g for g in _curve(rows, sft) if g.kind == RowKind.INTERPOLATION]
    claims += _retains_more(rows, "TALR retains more general ability than {other} at matched domain gain", "talr",
                            {"L2-SP": comparators["l2sp"], "FLOW": comparators["flow"], "LoRA": comparators["lora"],
                             "averaging (WiSE-FT of SFT)": comparators["averaging"]}, resamples)
    claims += _retains_more(rows, "Context-free replay beats {other} at matched domain gain", "cf-replay",
                            {"contextual replay": _curve(rows, _trained(rows, "contextual-replay")),
                             "corpus replay": _curve(rows, _trained(rows, "corpus-replay"))}, resamples)
    claims += [_alpha_beats(rows, RowKind.INTERPOLATION, resamples), _alpha_beats(rows, RowKind.ENSEMBLE, resamples),
               _cocktail(rows, resamples)]
    return claims
