"""Greedy decoding against transformers' batched ``model.generate`` (issue 28): the same tokens
when no sequence stops early and when some do, and a KV cache with room reserved
(``forgetless.kv_cache``) that yields the logits of ``DynamicCache`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from forgetless.evaluation.generate import _left_pad, greedy_decode
from forgetless.kv_cache import reserved_cache
from tests.conftest import make_model
from tests.tolerance import assert_same_greedy, fp32_reorder_rtol, tiny_llama_terms

BUDGET = 12


@pytest.fixture(scope="module")
def setup(tokenizer) -> tuple[torch.nn.Module, list[list[int]], int]:
    """The tiny Llama, 8 prompts of 2-14 tokens, and the pad id."""
    model = make_model(tokenizer, seed=3).eval()
    rng = np.random.default_rng(4)
    prompts = [[tokenizer.bos_token_id, *rng.integers(5, len(tokenizer), size=int(n)).tolist()]
               for n in rng.integers(1, 14, size=8)]
    return model, prompts, tokenizer.pad_token_id


def batched_generate(model: torch.nn.Module, prompts: list[list[int]], pad: int, eos: int | None) -> list[list[int]]:
    """``model.generate`` greedy on the whole left-padded batch at once, cut at ``eos``."""
    ids, mask = _left_pad(prompts, pad)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=BUDGET, do_sample=False,
                             eos_token_id=eos, pad_token_id=pad)[:, ids.shape[1]:].tolist()
    return [o[: o.index(eos)] if eos is not None and eos in o else o for o in out]


def test_no_sequence_stops_and_the_tokens_are_generates(setup) -> None:
    model, prompts, pad = setup
    model.generation_config.eos_token_id = None  # nothing stops: every row runs the whole budget
    reference = batched_generate(model, prompts, pad, None)
    ours = greedy_decode(model, prompts, BUDGET, None, pad, batch_size=len(prompts), progress=False)
    assert all(len(r) == BUDGET for r in reference)
    # The same batch, the same padding, the same kernels: the same tokens, not merely close ones.
    assert ours == reference


def test_some_sequences_stop_and_the_tokens_are_generates(setup) -> None:
    model, prompts, pad = setup
    model.generation_config.eos_token_id = None
    free = batched_generate(model, prompts, pad, None)
    # A stand-in EOS the random model emits at different steps in different rows: rows leave the batch.
    eos = int(np.bincount([t for seq in free for t in seq[1:]]).argmax())
    reference = batched_generate(model, prompts, pad, eos)
    assert len({len(r) for r in reference}) > 1 and min(len(r) for r in reference) < BUDGET
    ours = greedy_decode(model, prompts, BUDGET, eos, pad, batch_size=len(prompts), progress=False)
    # generate keeps finished rows in its batch; ours drops them, so later steps multiply smaller matrices:
    # equal up to an argmax that rounding could flip (none in practice; the helper checks the margin).
    assert_same_greedy(model, prompts, ours, reference, fp32_reorder_rtol(tiny_llama_terms(positions=27)))


def test_reserved_cache_gives_dynamic_cache_logits_bit_for_bit(setup) -> None:
    """Prefill, three steps, then rows 0 and 2 dropped and two more steps: the same logits throughout."""
    model, prompts, pad = setup
    ids, mask = _left_pad(prompts[:4], pad)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    caches = [DynamicCache(), reserved_cache(ids.shape[1] + 2)]  # 2: the buffers must also grow past their room
    logits = []
    with torch.no_grad():
        for cache in caches:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
            seen, step_mask, token, position = [out.logits], mask, out.logits[:, -1].argmax(-1), positions[:, -1] + 1
            for step in range(5):
                if step == 3:
                    keep = torch.tensor([1, 3])
                    cache.batch_select_indices(keep)
                    step_mask, token, position = step_mask[keep], token[keep], position[keep]
                step_mask = torch.cat([step_mask, step_mask.new_ones((len(token), 1))], dim=1)
                out = model(input_ids=token[:, None], attention_mask=step_mask, position_ids=position[:, None],
                            cache=cache, use_cache=True)
                seen.append(out.logits)
                token, position = out.logits[:, -1].argmax(-1), position + 1
            logits.append(seen)
    assert all(torch.equal(a, b) for a, b in zip(*logits))
    assert caches[1].get_seq_length() == ids.shape[1] + 5
