"""Selection on validation, evidence-gated recommendations and seed-claim verdicts, on synthetic per-item rows.

Every row here is built from per-item scores the way the runner builds them:
a model is correct on the first ``k`` of 100 test (or validation) examples, so
two models differ exactly on the items between their ``k``s, and the paired
interval of the difference is that of a 0/1 vector with known ones. Forgetting
is a per-document shift of the general loss, constant (an interval of zero
width) unless ``spread`` alternates it by +-spread across documents.
"""

from __future__ import annotations

from typing import Any

import pytest

from forgetless.study.reporting.claims import seed_claims
from forgetless.study.reporting.paired import difference, over_floor
from forgetless.study.rows import Group, RowKind, family_of, group_id, groups
from forgetless.study.reporting.selection import choose_alpha, choose_learning_rates, choose_model
from forgetless.study.reporting.verdicts import compare, curve_note, decide

N, DOCS, BASE_LOSS = 100, 40, 4.0


def _hits(k: int) -> list[int]:
    return [1] * k + [0] * (N - k)


def row(row_id: str, kind: str, test: int, val: int, forget: float = 0.0, spread: float = 0.0,
        base_test: int = 0, **extra: Any) -> dict[str, Any]:
    """A results row with per-item scores: ``test``/``val`` correct examples out of 100, loss shifted by ``forget``."""
    nats = [10 * (BASE_LOSS + forget + (spread if i % 2 else -spread)) for i in range(DOCS)]
    return {"id": row_id, "label": row_id, "kind": kind, "domain_accuracy": test / N, "validation_accuracy": val / N,
            "forgetting": forget, "gain": (test - base_test) / N, "general_nats_per_token": BASE_LOSS + forget,
            "items": {"domain_correct": _hits(test), "validation_correct": _hits(val), "general_nats": nats,
                      "general_tokens": [10] * DOCS}, **extra}


def base(test: int = 0, val: int = 0, floor: int = 10) -> dict[str, Any]:
    """The base row; the constant answer is right on the *last* ``floor`` test examples."""
    b = row("base", "base", test, val, majority_answer="2", majority_accuracy=floor / N)
    b["items"]["floor_correct"] = [0] * (N - floor) + [1] * floor
    return b


def trained(method: str, lr: float, test: int, val: int, forget: float, seed: int = 0, family: str | None = "sft",
            **extra: Any) -> dict[str, Any]:
    return row(f"{method}/lr={lr:g}/seed={seed}", "trained", test, val, forget, method=method, learning_rate=lr,
               seed=seed, family=family, **extra)


def point(parent: dict[str, Any], kind: str, alpha: float, test: int, val: int, forget: float) -> dict[str, Any]:
    tag = "interp" if kind == "interpolation" else "ensemble"
    return row(f"{parent['id']}/{tag}={alpha:g}", kind, test, val, forget, alpha=alpha, parent=parent["id"],
               method=parent["method"], learning_rate=parent["learning_rate"], family=parent["family"])


# --- selection ---------------------------------------------------------------------------------------------------

def test_validation_best_is_chosen_where_test_best_differs() -> None:
    rows = [base(), trained("sft", 1e-3, test=40, val=60, forget=0.1), trained("talr", 1e-3, test=55, val=50,
                                                                             forget=0.1, family="talr")]
    assert choose_model(rows, budget=0.5).group.id == "sft/lr=0.001"  # the test-best talr is not picked


def test_learning_rate_and_alpha_are_chosen_on_validation() -> None:
    low, high = trained("sft", 1e-4, test=60, val=30, forget=0.1), trained("sft", 1e-3, test=40, val=50, forget=0.5)
    rows = [base(), low, high, point(high, "interpolation", 0.25, test=70, val=40, forget=0.1),
            point(high, "interpolation", 0.75, test=35, val=55, forget=0.3)]
    assert choose_learning_rates(rows)["sft"].first["learning_rate"] == 1e-3
    parent = next(g for g in groups(rows, RowKind.TRAINED) if g.id == "sft/lr=0.001")
    assert choose_alpha(rows, parent, RowKind.INTERPOLATION).get("alpha") == 0.75
    assert choose_alpha(rows, parent, RowKind.INTERPOLATION, budget=0.2).get("alpha") == 0.25


def test_seeds_are_aggregated_before_choosing() -> None:
    # lr 1e-3 has one lucky seed (70) but a mean of 45; lr 1e-4 is steady at 50.
    rows = [base(), trained("sft", 1e-3, 30, 70, 0.1, seed=0), trained("sft", 1e-3, 30, 20, 0.1, seed=1),
            trained("sft", 1e-4, 30, 50, 0.1, seed=0), trained("sft", 1e-4, 30, 50, 0.1, seed=1)]
    chosen = choose_learning_rates(rows)["sft"]
    assert chosen.first["learning_rate"] == 1e-4 and len(chosen.rows) == 2
    assert chosen.validation_accuracy == pytest.approx(0.5)
    assert group_id("sft/lr=0.001/seed=1/interp=0.5") == "sft/lr=0.001/interp=0.5"


def test_budget_and_ties() -> None:
    rows = [base(val=20), trained("sft", 1e-3, 40, 60, forget=0.8)]
    assert choose_model(rows, budget=0.5).group.kind == "base"  # the better model is over budget
    assert choose_model(rows[1:], budget=0.5).group is None
    tied = [base(val=20), trained("sft", 1e-3, 40, 20, forget=-0.1)]
    assert choose_model(tied, budget=0.5).group.kind == "base"  # no validation gain: keep the base


def test_family_inference() -> None:
    assert family_of({}) == "sft"
    assert family_of({"method": "talr", "method_params": {"tau": 1}}) == "talr"
    assert family_of({"regularizers": {"l2sp": {"weight": 0.1}}}) == "l2sp"
    assert family_of({"lora": True}) == "lora"
    assert family_of({"replay": {"data": "context-free"}}) == "cf-replay"
    assert family_of({"method": "talr", "lora": True}) is None


# --- paired differences and the recommendation -------------------------------------------------------------------

def test_paired_difference_is_exact_on_nested_items() -> None:
    a, b = Group("a", (row("a", "trained", 30, 0),)), Group("b", (row("b", "trained", 30, 0),))
    d = difference(a, b, "test")
    assert (d.estimate, d.low, d.high) == (0.0, 0.0, 0.0) and d.verdict == "indistinguishable"
    wins = difference(Group("c", (row("c", "trained", 50, 0),)), b, "test")
    assert wins.estimate == pytest.approx(0.2) and wins.low > 0.1 and wins.verdict == "win"
    shifted = difference(Group("f", (row("f", "trained", 0, 0, forget=0.25),)), b, "general")
    assert shifted.low == pytest.approx(0.25) and shifted.high == pytest.approx(0.25)


def test_ship_needs_gain_and_floor_intervals_above_zero() -> None:
    rows = [base(test=5, floor=10), trained("sft", 1e-3, test=40, val=40, forget=0.2)]
    decision = decide(rows, budget=0.5)
    assert decision.ship is not None and decision.ship.id == "sft/lr=0.001"
    assert decision.gain.low > 0 and decision.floor.low > 0


def test_no_ship_below_the_floor_says_why_with_the_learning_curve() -> None:
    curve = [{"step": s, "validation_accuracy": v} for s, v in ((20, 0.1), (40, 0.2), (60, 0.3))]
    rows = [base(test=0, floor=60), trained("sft", 1e-3, test=30, val=30, forget=0.1, curve=curve)]
    decision = decide(rows, budget=0.5)
    assert decision.ship is None and decision.gain.verdict == "win"  # it gains over the base...
    assert decision.floor.verdict == "loss"  # ...but a constant answer does better
    text = " ".join(decision.reasons)
    assert "did not beat the floor" in text and "too small" in text and "10.0% -> 20.0% -> 30.0%" in text
    assert "still rising at the end" in text


def test_a_curve_that_peaked_is_not_called_still_rising() -> None:
    # The demo's SFT: 0% -> 9.4% -> 6.2%. The net change is up, the end is down.
    curve = [{"step": s, "validation_accuracy": v} for s, v in ((0, 0.0), (100, 0.094), (200, 0.062))]
    group = groups([trained("sft", 1e-3, test=5, val=5, forget=1.0, curve=curve)], RowKind.TRAINED)[0]
    assert curve_note(group) == ("; its validation exact match went 0.0% -> 9.4% -> 6.2% over steps 0-200 "
                                 "(falling at the end)")


def test_no_ship_when_the_gain_interval_includes_zero() -> None:
    rows = [base(test=20, floor=5), trained("sft", 1e-3, test=22, val=30, forget=0.1)]
    decision = decide(rows, budget=0.5)
    assert decision.ship is None and decision.gain.low <= 0 < decision.gain.high
    assert "does not lie above 0" in decision.reasons[0]


def test_no_ship_when_the_base_wins_on_validation() -> None:
    rows = [base(test=20, val=50), trained("sft", 1e-3, test=60, val=40, forget=0.1)]
    decision = decide(rows, budget=0.5)
    assert decision.ship is None and decision.choice.group.kind == "base"


def test_method_differences_are_wins_only_outside_zero() -> None:
    a = Group("a", (trained("talr", 1e-3, 52, 0, 0.30, family="talr"),))
    b = Group("b", (trained("sft", 1e-3, 50, 0, 0.31, spread=0.5),))
    c = Group("c", (trained("sft", 1e-3, 30, 0, 0.80),))
    assert compare(a, b, "test")[0] == "indistinguishable" and compare(a, b, "general")[0] == "indistinguishable"
    assert compare(a, c, "test")[0] == "win" and compare(a, c, "general")[0] == "win"
    assert compare(c, a, "test")[0] == "loss"
    assert over_floor(a, [1] * N).verdict == "loss"


# --- seed claims -------------------------------------------------------------------------------------------------

def _claims(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {c.claim: c.verdict for c in seed_claims(rows, resamples=500)}


def _verdict(rows: list[dict[str, Any]], start: str) -> str:
    return next(v for k, v in _claims(rows).items() if k.startswith(start))


def test_every_claim_is_not_run_without_its_models() -> None:
    verdicts = _claims([base()])
    assert len(verdicts) == 11 and set(verdicts.values()) == {"not run"}


def test_sft_forgetting_claims() -> None:
    high, small = trained("sft", 2e-3, 50, 50, forget=1.0), trained("sft-small", 5e-4, 48, 49, forget=0.3)
    assert _verdict([base(), high, small], "SFT at a high") == "reproduced"
    assert _verdict([base(), high, small], "A smaller learning rate") == "reproduced"
    assert _verdict([base(), trained("sft", 2e-3, 50, 50, forget=-0.2)], "SFT at a high") == "not reproduced"
    assert _verdict([base(), trained("sft", 2e-3, 50, 50, 0.01, spread=0.5)], "SFT at a high") == "inconclusive"
    worse = trained("sft-small", 5e-4, 50, 49, forget=1.4)
    assert _verdict([base(), high, worse], "A smaller learning rate") == "not reproduced"
    # Less forgetting bought with much less gain is not "at comparable gain".
    weak = trained("sft-small", 5e-4, 20, 20, forget=0.3)
    assert _verdict([base(), high, weak], "A smaller learning rate") == "inconclusive"
    # Neither learns the domain: there is no gain to match.
    idle = [base(test=5), trained("sft", 2e-3, 5, 5, 1.0), trained("sft-small", 5e-4, 5, 5, 0.3)]
    assert _verdict(idle, "A smaller learning rate") == "inconclusive"


def test_talr_is_compared_with_each_method_at_matched_gain() -> None:
    sft = trained("sft", 2e-3, 50, 50, forget=1.0)
    rows = [base(), sft, trained("talr", 2e-3, 50, 50, forget=0.3, family="talr"),
            # L2-SP: the point closest in validation EM (lr 1e-3, val 48) forgets more -> reproduced
            trained("l2sp", 1e-3, 49, 48, forget=0.7, family="l2sp"),
            trained("l2sp", 1e-4, 10, 10, forget=0.0, family="l2sp"),
            # FLOW retains more at the same gain -> not reproduced
            trained("flow", 2e-3, 50, 51, forget=0.1, family="flow"),
            # LoRA: noisy forgetting, no significant difference -> inconclusive
            trained("lora", 2e-3, 50, 50, forget=0.3, spread=1.0, family="lora"),
            # averaging: the WiSE-FT point of SFT with matched validation EM forgets more -> reproduced
            point(sft, "interpolation", 0.5, 48, 50, forget=0.6)]
    assert _verdict(rows, "TALR retains more general ability than L2-SP") == "reproduced"
    assert _verdict(rows, "TALR retains more general ability than FLOW") == "not reproduced"
    assert _verdict(rows, "TALR retains more general ability than LoRA") == "inconclusive"
    assert _verdict(rows, "TALR retains more general ability than averaging") == "reproduced"


def test_replay_claims() -> None:
    rows = [base(), trained("cf", 2e-3, 50, 50, 0.2, family="cf-replay"),
            trained("ctx", 2e-3, 50, 50, 0.5, family="contextual-replay")]
    assert _verdict(rows, "Context-free replay beats contextual") == "reproduced"
    assert _verdict(rows, "Context-free replay beats corpus") == "not run"


def test_overadaptation_reads_weights_and_outputs() -> None:
    sft = trained("sft", 2e-3, 50, 50, forget=1.0)
    rows = [base(), sft, point(sft, "interpolation", 0.25, 70, 40, 0.2),  # test-best, not chosen
            point(sft, "interpolation", 0.5, 60, 55, 0.4), point(sft, "ensemble", 0.5, 35, 52, 0.5)]
    assert _verdict(rows, "Some alpha in (0, 1) beats the fine-tuned model in-domain: weights") == "reproduced"
    assert _verdict(rows, "Some alpha in (0, 1) beats the fine-tuned model in-domain: outputs") == "not reproduced"
    evidence = next(c.evidence for c in seed_claims(rows, 200) if "weights" in c.claim)
    assert "alpha 0.5" in evidence


def test_cocktail_claim() -> None:
    sft = trained("sft", 2e-3, 50, 50, forget=1.0)
    cocktail = row("cocktail/sft/lr=0.002/seed=0", "cocktail", 49, 49, forget=0.2, parent=sft["id"])
    assert _verdict([base(), sft, cocktail], "LM-Cocktail") == "reproduced"
    losing = {**cocktail, **row(cocktail["id"], "cocktail", 20, 20, forget=0.2, parent=sft["id"])}
    assert _verdict([base(), sft, losing], "LM-Cocktail") == "inconclusive"
    forgetting = row(cocktail["id"], "cocktail", 50, 50, forget=1.5, parent=sft["id"])
    assert _verdict([base(), sft, forgetting], "LM-Cocktail") == "not reproduced"


def test_cocktail_claim_judges_a_mix_with_the_fine_tuned_model_chosen_on_validation() -> None:
    """With peers, alpha 0 is the mix without the fine-tuned model: not what the claim is about."""
    sft = trained("sft", 2e-3, 50, 50, forget=1.0)
    mix_alone = row("cocktail/sft/lr=0.002/seed=0/a=0", "cocktail", 5, 5, forget=0.0, parent=sft["id"], alpha=0.0)
    half = row("cocktail/sft/lr=0.002/seed=0/a=0.5", "cocktail", 49, 49, forget=0.2, parent=sft["id"], alpha=0.5)
    tail = row("cocktail/sft/lr=0.002/seed=0/a=0.75", "cocktail", 50, 40, forget=0.9, parent=sft["id"], alpha=0.75)
    claim = next(c for c in seed_claims([base(), sft, mix_alone, half, tail], 500) if c.claim.startswith("LM-Cocktail"))
    # alpha 0.5 has the best validation score among alpha > 0: near-equal gain, much less forgetting.
    assert claim.verdict == "reproduced" and "a=0.5" in claim.evidence
