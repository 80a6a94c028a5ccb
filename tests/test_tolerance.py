"""The suite's own tolerances (tests/tolerance.py): the reordering bound holds, and the greedy check still fails."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_model
from tests.tolerance import FP32_UNIT_ROUNDOFF, assert_same_greedy, fp32_reorder_rtol, steps_before_a_near_tie


def test_reorder_bound_by_hand_and_on_real_sums() -> None:
    assert FP32_UNIT_ROUNDOFF == 2.0**-24
    assert fp32_reorder_rtol(1000) == pytest.approx(2 * 1000 * 2.0**-24 / (1 - 1000 * 2.0**-24), rel=1e-15)
    with pytest.raises(ValueError, match="no bound"):
        fp32_reorder_rtol(2**24)
    # Positive fp32 terms summed forward, backward and pairwise stay within the bound of each other.
    values = torch.rand(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 10
    exact = values.double().sum().item()
    orders = [values.sum().item(), values.flip(0).sum().item(), values.view(64, 64).sum(0).sum().item()]
    loop = torch.zeros((), dtype=torch.float32)
    for v in values:  # left to right, one rounding per addition: the worst case the bound is for
        loop += v
    for total in [*orders, loop.item()]:
        assert abs(total - exact) <= fp32_reorder_rtol(4096) / 2 * exact
    assert abs(loop.item() - orders[0]) <= fp32_reorder_rtol(4096) * exact


def test_greedy_check_accepts_the_same_tokens_and_rejects_others(tokenizer) -> None:  # noqa: ANN001
    model = make_model(tokenizer, seed=3).eval()
    prompt = [tokenizer.bos_token_id, 40, 41]
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False, eos_token_id=None,
                             pad_token_id=tokenizer.pad_token_id)[0, len(prompt):].tolist()
    rtol = fp32_reorder_rtol(1000)
    assert steps_before_a_near_tie(model, prompt, out, rtol) == len(out)  # this seed's argmaxes are clear
    assert steps_before_a_near_tie(model, prompt, out, rtol=10.0) == 0  # every step "tied" at a huge tolerance
    assert_same_greedy(model, [prompt], [out], [out], rtol)
    wrong = [*out[:3], (out[3] + 1) % len(tokenizer), *out[4:]]
    with pytest.raises(AssertionError, match="no near tie"):
        assert_same_greedy(model, [prompt], [wrong], [out], rtol)
