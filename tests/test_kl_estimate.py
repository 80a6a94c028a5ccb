"""The context-free KL estimate: hand-computed values, zero for the base, exact agreement on an enumerable model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from forgetless.replay.generate import Sample, SamplingSettings, sample_sequences
from forgetless.replay.kl_estimate import estimate_from_nll, kl_estimate, sequence_nll
from tests.test_replay_generate import BOS, EOS, PAD, tiny_vocab_model

VOCAB, LENGTH = 5, 3


def all_sequences() -> list[Sample]:
    """Every sequence the sampler can return with ``max_new_tokens=LENGTH``: EOS only last, short ones end in EOS."""
    seqs = []
    for k in range(1, LENGTH + 1):
        for body in itertools.product(range(VOCAB), repeat=k):
            if EOS in body[:-1] or (k < LENGTH and body[-1] != EOS):
                continue
            seqs.append(Sample(prompt_ids=[BOS], token_ids=list(body), finished=body[-1] == EOS))
    return seqs


def exact_kl(base: torch.nn.Module, model: torch.nn.Module) -> tuple[float, float]:
    """(KL(p_base ‖ p_model) over sequences truncated at LENGTH, total base probability)."""
    seqs = all_sequences()
    log_base = -sequence_nll(base, seqs, batch_size=256)
    log_model = -sequence_nll(model, seqs, batch_size=256)
    p = log_base.exp()
    return float((p * (log_base - log_model)).sum()), float(p.sum())


def draw(model: torch.nn.Module, n: int, seed: int) -> list[Sample]:
    settings = SamplingSettings(num_samples=n, max_new_tokens=LENGTH, seed=seed, batch_size=1000)
    return sample_sequences(model, [[BOS]] * n, settings, EOS, PAD, progress=False)


def test_estimate_from_hand_computed_differences() -> None:
    est = estimate_from_nll(torch.tensor([3.0, 5.0, 7.0]), torch.tensor([2.0, 3.0, 4.0]), torch.tensor([1, 1, 2]),
                            resamples=500, seed=4)
    assert est.kl == pytest.approx(2.0)  # differences 1, 2, 3
    assert est.kl_per_token == pytest.approx(6 / 4)
    assert est.nll_model == pytest.approx(5.0) and est.nll_base == pytest.approx(3.0) and est.tokens == 4
    # The paired percentile bootstrap written out: resample the same sample indices for both models.
    diff, tokens = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0])
    draws = np.random.default_rng(4).integers(0, 3, size=(500, 3))
    assert [est.ci_low, est.ci_high] == pytest.approx(list(np.quantile([diff[i].mean() for i in draws], [0.025, 0.975])))
    per_token = [diff[i].sum() / tokens[i].sum() for i in draws]
    assert [est.ci_low_per_token, est.ci_high_per_token] == pytest.approx(list(np.quantile(per_token, [0.025, 0.975])))


def test_enumeration_is_a_distribution() -> None:
    _, total = exact_kl(tiny_vocab_model(0), tiny_vocab_model(0))
    assert total == pytest.approx(1.0, abs=1e-5)


def test_estimate_of_the_base_against_itself_is_zero() -> None:
    base = tiny_vocab_model(0)
    same = tiny_vocab_model(0)  # a separate copy with the same weights
    est = kl_estimate(same, base, draw(base, 500, seed=1), batch_size=500)
    assert est.ci_low <= 0.0 <= est.ci_high
    assert abs(est.kl) < 1e-5


def test_estimate_agrees_with_the_exact_kl_within_its_interval() -> None:
    base, other = tiny_vocab_model(0), tiny_vocab_model(7)
    exact, _ = exact_kl(base, other)
    est = kl_estimate(other, base, draw(base, 4000, seed=2), batch_size=1000)
    assert exact > 0.1  # the two models really differ
    assert est.ci_low <= exact <= est.ci_high, (exact, est)
    assert est.ci_high - est.ci_low < exact  # and the interval is informative


def test_estimate_is_positive_after_fine_tuning() -> None:
    base = tiny_vocab_model(0)
    tuned = tiny_vocab_model(0).train()
    optimizer = torch.optim.Adam(tuned.parameters(), lr=1e-2)
    batch = torch.tensor([[BOS, 4, 4, 3, EOS]] * 4)  # a "domain" the base rarely produces
    for _ in range(15):
        loss = tuned(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    est = kl_estimate(tuned, base, draw(base, 500, seed=3), batch_size=500)
    exact, _ = exact_kl(base, tuned)
    assert est.ci_low > 0, est
    assert est.ci_low <= exact <= est.ci_high
