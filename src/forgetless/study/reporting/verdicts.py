"""What the study may recommend: "Ship X" only where the evidence holds, otherwise the plain reason why not.

The model is chosen on validation (``forgetless.study.reporting.selection``); the test set
then has to confirm it. Shipping X requires both, each with its 95% paired
bootstrap interval over test examples lying above 0:

- X's gain over the base (a fine-tuned model that does not beat its own starting
  point is not worth its forgetting);
- X's exact match minus the constant-answer floor (always giving the test set's
  most frequent answer): a model below it learned the answer format and prior, not
  the task.

Otherwise the report says that no trained model demonstrably gains, and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forgetless.study.reporting.paired import Difference, difference, over_floor
from forgetless.study.rows import Group, Row, RowKind, base_group, groups
from forgetless.study.reporting.selection import Choice, best_on_validation, choose_model


@dataclass(frozen=True)
class Decision:
    """The recommendation: ``ship`` is set only when the evidence holds for the validation choice."""

    choice: Choice
    ship: Group | None
    gain: Difference | None = None
    floor: Difference | None = None
    reasons: list[str] = field(default_factory=list)


def floor_of(rows: list[Row]) -> tuple[str, float, list[int]] | None:
    """``(answer, accuracy, per-example 0/1)`` of always giving the most frequent test answer, from the base row."""
    base = base_group(rows).first
    items = base.get("items") or {}
    if "floor_correct" not in items:
        return None
    return str(base["majority_answer"]), float(base["majority_accuracy"]), list(items["floor_correct"])


def _is_plain_sft(group: Group) -> bool:
    return group.kind == RowKind.TRAINED and (group.get("family") == "sft" or bool(group.get("plain_sft")))


def curve_note(group: Group, last: int = 2) -> str:
    """How validation exact match moved over the last ``last`` intervals of the learning curve, if one was drawn.

    A score still rising when training stopped says the budget, not the method, is the limit.
    """
    curve = group.get("curve") or []
    if len(curve) < 2:
        return ""
    tail = curve[-(last + 1):]
    first, before, end = tail[0], tail[-2], tail[-1]
    # The trend is the last interval's: 0% -> 9% -> 6% is falling at the end, not "still rising".
    trend = ("still rising" if end["validation_accuracy"] > before["validation_accuracy"]
             else "flat" if end["validation_accuracy"] == before["validation_accuracy"] else "falling")
    path = " -> ".join(f"{point['validation_accuracy']:.1%}" for point in tail)
    return f"; its validation exact match went {path} over steps {first['step']}-{end['step']} ({trend} at the end)"


def _diagnose(rows: list[Row], floor: tuple[str, float, list[int]] | None, budget: float, resamples: int) -> str:
    """Why nothing may ship: first whether plain SFT learned the task at all, then the budget."""
    sft = best_on_validation([g for g in groups(rows, RowKind.TRAINED) if _is_plain_sft(g)])
    if sft is None:
        return ""
    if floor is not None:
        answer, accuracy, correct = floor
        beat = over_floor(sft, correct, resamples)
        if beat.verdict != "win":
            return (f"Plain SFT (`{sft.label}`, the best on validation) did not beat the floor either: "
                    f"{sft.mean('domain_accuracy'):.1%} against {accuracy:.1%} for always answering `{answer}` "
                    f"(difference {beat.text('+.1%')}), so the training budget (steps) or the learning rate is too "
                    f"small for this domain{curve_note(sft)}.")
    gain = difference(sft, base_group(rows), "test", resamples)
    if gain.verdict == "win" and sft.mean("forgetting") > budget:
        return (f"Plain SFT (`{sft.label}`) does gain ({gain.text('+.1%')}) but forgets "
                f"{sft.mean('forgetting'):+.3f} nats/token, over the budget of {budget:g}: a smaller learning rate, "
                "a retaining method or interpolation towards the base may fit within it.")
    return ""


def decide(rows: list[Row], budget: float, resamples: int = 1000) -> Decision:
    """Choose on validation, then test the choice's gain and its margin over the floor on the test set."""
    choice = choose_model(rows, budget)
    pick = choice.group
    floor = floor_of(rows)
    if pick is None:
        return Decision(choice, None, reasons=[choice.reason + ".", _diagnose(rows, floor, budget, resamples)])
    if pick.kind == RowKind.BASE:
        return Decision(choice, None, reasons=[
            f"No fine-tuned model within the budget scores above the base on validation (the choice: {choice.reason}).",
            _diagnose(rows, floor, budget, resamples)])
    gain = difference(pick, base_group(rows), "test", resamples)
    margin = over_floor(pick, floor[2], resamples) if floor else None
    reasons = []
    if gain.verdict != "win":
        reasons.append(f"The validation choice `{pick.label}` gains {gain.text('+.1%')} over the base on the test "
                       "set: the interval does not lie above 0.")
    if margin is not None and floor is not None and margin.verdict != "win":
        reasons.append(f"`{pick.label}` scores {pick.mean('domain_accuracy'):.1%} on the test set against "
                       f"{floor[1]:.1%} for always answering `{floor[0]}` (difference {margin.text('+.1%')}): it "
                       "does not demonstrably beat the constant answer.")
    if reasons:
        reasons.append(_diagnose(rows, floor, budget, resamples))
        return Decision(choice, None, gain, margin, reasons)
    return Decision(choice, pick, gain, margin, [])


def compare(a: Group, b: Group, metric: str = "test", resamples: int = 1000) -> tuple[str, Difference]:
    """``("win" | "loss" | "indistinguishable", difference)`` of ``a`` against ``b`` on test (or general) scores.

    For ``"general"`` the sign is flipped so that a win means ``a`` forgets less.
    """
    if metric == "general":
        d = difference(b, a, "general", resamples)
    else:
        d = difference(a, b, "test", resamples)
    return d.verdict, d
