"""Analytic tests of the training objectives: hand-computed weights and the limits that reduce to nll."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from forgetless.training.config import TrainConfig
from forgetless.data import PadCollator, load_examples
from forgetless.objectives import OBJECTIVES, build_objective
from forgetless.training.run import make_trainer
from forgetless.losses import token_nll
from tests.conftest import make_model, write_jsonl


def _reduce(objective, token_loss: torch.Tensor, mask: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
    """The trainer's reduction: Σ w·ℓ / N over supervised tokens (N = all of them here)."""
    batch = batch or {}
    weights = objective.weights(token_loss, mask, batch)
    if "sample_weight" in batch:
        weights = weights * batch["sample_weight"][:, None]
    return (weights * token_loss * mask).sum() / mask.sum()


def _fit_and_reduce(objective, token_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    counts = mask.sum(1)
    objective.fit(token_loss[mask], (token_loss * mask).sum(1)[counts > 0] / counts[counts > 0])
    return _reduce(objective, token_loss, mask)


LOSS = torch.tensor([[1.0, 2.0, 3.0, 0.0], [0.5, 4.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, True, False], [True, True, False, False]])
NLL = (LOSS * MASK).sum() / MASK.sum()


def test_registry_lists_every_method() -> None:
    assert {"nll", "dft", "talr", "flow", "flow_token"} <= set(OBJECTIVES)


def test_dft_on_uniform_logits_over_two_tokens_is_half_the_cross_entropy() -> None:
    logits = torch.zeros(1, 3, 2)  # uniform over a two-token vocabulary
    labels = torch.tensor([[0, 1, 0]])
    token_loss, mask = token_nll(logits, labels)
    assert torch.allclose(token_loss[mask], torch.full((2,), math.log(2)))
    dft = _reduce(build_objective("dft"), token_loss, mask)
    assert torch.allclose(dft, torch.tensor(math.log(2) / 2))


def test_dft_weights_are_token_probabilities() -> None:
    weights = build_objective("dft").weights(LOSS, MASK, {})
    assert torch.allclose(weights, torch.exp(-LOSS))


def test_talr_hand_computed_weights() -> None:
    talr = build_objective("talr", {"floor": 0.0})
    talr.fit(LOSS[MASK], torch.tensor([2.0, 2.25]))
    # Supervised losses 1, 2, 3, 0.5, 4: lower median τ = 2.
    assert talr.stats()["tau"] == pytest.approx(2.0)
    raw = torch.exp(-torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0]) / 2)
    expected = raw / raw.mean()
    weights = talr.weights(LOSS, MASK, {})[MASK]
    assert torch.allclose(weights, expected, atol=1e-6)
    assert weights.mean() == pytest.approx(1.0, abs=1e-6)  # normalize: mean


def test_talr_sample_median_and_fixed_tau() -> None:
    talr = build_objective("talr", {"tau": "sample_median"})
    talr.fit(LOSS[MASK], torch.tensor([2.0, 2.25, 7.0]))
    assert talr.stats()["tau"] == pytest.approx(2.25)
    fixed = build_objective("talr", {"tau": 0.5})
    fixed.fit(LOSS[MASK], torch.tensor([2.0, 2.25]))
    assert fixed.stats()["tau"] == 0.5


def test_talr_floor_clamps_hard_tokens() -> None:
    talr = build_objective("talr", {"tau": 0.1, "floor": 0.2})
    losses = torch.tensor([[0.0, 5.0]])
    talr.fit(losses.flatten(), losses.mean(1))
    raw = torch.exp(-torch.tensor([0.0, 5.0]) / 0.1)  # [1, ~2e-22]
    floor = 0.2 * raw.mean()
    expected = raw.clamp(min=floor) / raw.clamp(min=floor).mean()
    assert torch.allclose(talr.weights(losses, torch.ones_like(losses, dtype=torch.bool), {}), expected.unsqueeze(0))
    assert talr.stats()["floored_fraction"] == 0.5


def test_talr_with_infinite_temperature_is_nll() -> None:
    for normalize in ("mean", "none"):
        talr = build_objective("talr", {"tau": 1e12, "normalize": normalize})
        assert torch.allclose(_fit_and_reduce(talr, LOSS, MASK), NLL, rtol=1e-9)


def test_uniform_weights_reduce_every_reweighted_loss_to_nll() -> None:
    # Equal token losses make TALR's weights uniform (= 1 after normalization).
    equal = torch.full((2, 4), 1.7) * MASK
    assert torch.allclose(_fit_and_reduce(build_objective("talr"), equal, MASK), torch.tensor(1.7))
    assert torch.allclose(_reduce(build_objective("nll"), LOSS, MASK), NLL)
    # Uniform per-sample weights of 1 leave the loss as nll.
    batch = {"sample_weight": torch.ones(2)}
    assert torch.allclose(_reduce(build_objective("flow"), LOSS, MASK, batch), NLL)


def test_bad_parameters_name_the_method_and_the_value() -> None:
    with pytest.raises(ValueError, match="talr: tau must be"):
        build_objective("talr", {"tau": "mean"})
    with pytest.raises(ValueError, match="talr: normalize"):
        build_objective("talr", {"normalize": "sum"})
    with pytest.raises(ValueError, match="method 'dft' takes no parameters"):
        build_objective("dft", {"tau": 1})
    with pytest.raises(ValueError, match="method .talr.: bad parameters"):
        build_objective("talr", {"temperature": 1})
    with pytest.raises(ValueError, match="flow: normalize"):
        build_objective("flow", {"normalize": "max"})
    with pytest.raises(ValueError, match="unknown method"):
        TrainConfig(model="m", data="d", output="o", method="nope")
    with pytest.raises(ValueError, match="talr: floor"):
        TrainConfig(model="m", data="d", output="o", method="talr", method_params={"floor": 2})


def _flow_trainer(tokenizer, rows: list[dict], method: str, params: dict, tmp_path: Path):
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    examples = load_examples(data, tokenizer)
    cfg = TrainConfig(model="x", data=str(data), output="x", method=method, method_params=params, batch_size=4)
    return make_trainer(cfg, make_model(tokenizer), tokenizer, examples, tmp_path / "w", save_strategy="no"), examples


@pytest.mark.parametrize("normalize, scale", [(False, math.exp(-1)), ("mean", 1.0)])
def test_flow_with_equal_base_losses_is_nll_up_to_the_documented_scale(
    tokenizer, tmp_path: Path, normalize, scale: float
) -> None:
    # Identical samples have identical base losses: every weight is exp(-τ/τ) = 1/e, or 1 after mean-normalizing.
    rows = [{"prompt": "Sum 1 and 2.\n", "completion": " Answer: 3"}] * 4
    trainer, examples = _flow_trainer(tokenizer, rows, "flow", {"normalize": normalize}, tmp_path)
    weights = torch.tensor([e["sample_weight"] for e in examples])
    assert torch.allclose(weights, torch.full((4,), scale), rtol=1e-6)
    batch = PadCollator(tokenizer.pad_token_id)(examples)
    token_loss, mask = token_nll(trainer.model(input_ids=batch["input_ids"]).logits.detach(), batch["labels"])
    nll = (token_loss * mask).sum() / mask.sum()
    assert torch.allclose(_reduce(trainer.objective, token_loss, mask, batch), nll * scale, rtol=1e-6)
    report = trainer.objective.report()
    assert sum(report["weight_histogram"]["counts"]) == 4 and report["cache_hit"] is False


def test_flow_weights_follow_base_losses_and_are_cached(tokenizer, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + i)} for i in range(6)]
    trainer, examples = _flow_trainer(tokenizer, rows, "flow", {}, tmp_path)
    from forgetless.objectives.flow import base_token_losses

    losses = base_token_losses(trainer, examples, 2)
    means = torch.stack([x[~x.isnan()].mean() for x in losses])
    tau = means.median()  # lower median, as documented
    expected = torch.exp(-means / tau)
    assert torch.allclose(torch.tensor([e["sample_weight"] for e in examples]), expected, rtol=1e-5)
    again, _ = _flow_trainer(tokenizer, rows, "flow", {}, tmp_path)
    assert again.objective.report()["cache_hit"] is True
    assert list((tmp_path / ".forgetless_cache").glob("flow-*.safetensors"))


def test_flow_token_weights_are_base_token_probabilities_over_tau(tokenizer, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + i)} for i in range(6)]
    trainer, examples = _flow_trainer(tokenizer, rows, "flow_token", {}, tmp_path)
    batch = PadCollator(tokenizer.pad_token_id)(examples[::-1])  # any order: looked up by token ids
    with torch.no_grad():
        token_loss, mask = token_nll(trainer.model(input_ids=batch["input_ids"]).logits, batch["labels"])
    tau = token_loss[mask].median()
    weights = trainer.objective.weights(token_loss, mask, batch)
    assert torch.allclose(weights[mask], torch.exp(-token_loss[mask] / tau), rtol=1e-5)
