"""Tolerances for comparing fp32 results of two computations that differ only in the order of their sums.

Exact equality holds only where the computation is the same: same batch shapes, same thread count, same
kernels. A different batch size (padding changes the matmul shapes), thread count or CPU kind (AVX512 and
AVX2 kernels block their sums differently) reorders the sums, and fp32 rounds each order differently. The
bound below is the one for that reordering, so a test that uses it states how long its sums are.
"""

from __future__ import annotations

import torch

FP32_UNIT_ROUNDOFF = torch.finfo(torch.float32).eps / 2  # u = 2**-24


def fp32_reorder_rtol(terms: int) -> float:
    """Relative distance allowed between two fp32 sums of ``terms`` same-signed values taken in different orders.

    Each order is within gamma_n = n*u / (1 - n*u) of the exact sum (Higham, *Accuracy and Stability of
    Numerical Algorithms*, 2nd ed., Lemma 3.1 and eq. 4.4), so two orders are within twice that of each other.
    ``terms`` is the length of the longest chain of reductions that feeds the compared value.
    """
    nu = terms * FP32_UNIT_ROUNDOFF
    if nu >= 1:
        raise ValueError(f"{terms} terms: fp32 gives no bound (n*u = {nu:.3g} >= 1)")
    return 2 * nu / (1 - nu)


def tiny_llama_terms(positions: int, summed: int = 1) -> int:
    """The longest chain of reductions behind a value of ``conftest.make_model``'s Llama.

    Per layer (2) the hidden (32) and MLP (64) dot products and attention over ``positions`` positions, the
    vocabulary's logsumexp (384 tokens), then a sum of ``summed`` such per-token values (a sequence's NLL).
    """
    return 2 * (32 + 64 + positions) + 384 + summed


def steps_before_a_near_tie(model: torch.nn.Module, prompt: list[int], tokens: list[int], rtol: float) -> int:
    """How many steps of ``tokens``, a greedy continuation of ``prompt``, come before one the rounding could flip.

    Greedy decoding takes an argmax; where the top two logits are within ``rtol`` of the largest logit's size,
    another order of the same sums (another batch shape, cache or CPU) may take the other token, and the two
    continuations may part there. Returns ``len(tokens)`` when no step is that close.
    """
    if not tokens:
        return 0
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, len(prompt) - 1: -1].float()
    top = logits.topk(2, dim=-1).values  # [len(tokens), 2]
    close = (top[:, 0] - top[:, 1] <= rtol * logits.abs().amax(-1)).nonzero()
    return int(close[0]) if len(close) else len(tokens)


def assert_same_greedy(model: torch.nn.Module, prompts: list[list[int]], got: list[list[int]],
                       want: list[list[int]], rtol: float) -> None:
    """``got == want``, continuation by continuation, except after a step whose top two logits are a near tie.

    Two greedy decoders of one model agree token for token only if each argmax is clear of rounding: this checks
    every token up to the first near tie of ``want`` and the whole continuation where there is none.
    """
    assert len(got) == len(want) == len(prompts)
    for prompt, ours, reference in zip(prompts, got, want):
        clear = steps_before_a_near_tie(model, prompt, reference, rtol)
        if clear == len(reference):
            assert ours == reference, f"prompt {prompt}: {ours} != {reference} with no near tie on the way"
        else:
            assert ours[:clear] == reference[:clear], f"prompt {prompt}: parted before the near tie at step {clear}"
