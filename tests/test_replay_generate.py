"""Context-free sampling: determinism, stopping at EOS, top-p, and agreement with the model's distribution."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgetless.replay.generate import (
    SamplingSettings,
    context_free_prompt,
    generate_context_free,
    sample_record,
    sample_sequences,
)
from tests.conftest import make_model
from tests.tolerance import assert_same_greedy, fp32_reorder_rtol, tiny_llama_terms

BOS, EOS, PAD = 0, 1, 2


def tiny_vocab_model(seed: int, vocab: int = 5, scale: float = 0.25) -> LlamaForCausalLM:
    """A Llama over ``vocab`` tokens (0 = BOS, 1 = EOS), small enough to enumerate its sequences."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                         tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # spread the logits so the distribution is far from uniform
        model.lm_head.weight.mul_(scale * 40)
    return model.eval()


def test_generation_from_bos_is_deterministic_for_a_fixed_seed(tokenizer) -> None:  # noqa: ANN001
    model = make_model(tokenizer)
    settings = SamplingSettings(num_samples=6, max_new_tokens=12, seed=3, batch_size=4)
    a = generate_context_free(model, tokenizer, settings, progress=False)
    torch.manual_seed(12345)  # the global RNG must not matter
    b = generate_context_free(model, tokenizer, settings, progress=False)
    c = generate_context_free(model, tokenizer, SamplingSettings(num_samples=6, max_new_tokens=12, seed=4, batch_size=4),
                              progress=False)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [s.token_ids for s in a] != [s.token_ids for s in c]
    assert all(s.prompt_ids == [tokenizer.bos_token_id] for s in a)


def test_sequences_stop_at_eos() -> None:
    model = tiny_vocab_model(0)
    settings = SamplingSettings(num_samples=200, max_new_tokens=8, seed=0, batch_size=32)
    samples = sample_sequences(model, [[BOS]] * 200, settings, EOS, PAD, progress=False)
    finished = [s for s in samples if s.finished]
    assert finished and len(finished) < len(samples)  # both kinds occur with this model
    for s in samples:
        assert EOS not in s.token_ids[:-1], "nothing may follow EOS"
        assert s.finished == (s.token_ids[-1] == EOS)
        assert len(s.token_ids) == 8 or s.finished


def test_batched_samples_follow_the_model_distribution() -> None:
    """First-token frequencies match p(x_1 | BOS) (a chi-square-style bound per token)."""
    model = tiny_vocab_model(1)
    n = 4000
    samples = sample_sequences(model, [[BOS]] * n, SamplingSettings(num_samples=n, max_new_tokens=1, batch_size=500),
                               EOS, PAD, progress=False)
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([[BOS]])).logits[0, -1], dim=-1)
    counts = torch.bincount(torch.tensor([s.token_ids[0] for s in samples]), minlength=p.numel()).double()
    for k in range(p.numel()):
        sd = math.sqrt(n * p[k] * (1 - p[k]))
        assert abs(counts[k] - n * p[k]) <= 5 * sd + 1


def test_left_padded_prompts_sample_as_if_alone() -> None:
    """Greedy continuations of prompts of different lengths are the same batched and one by one."""
    model = tiny_vocab_model(2, vocab=6)
    prompts = [[BOS, 3], [BOS, 4, 5, 3], [BOS]]
    greedy = SamplingSettings(num_samples=3, max_new_tokens=5, temperature=0.0, batch_size=3)
    batched = sample_sequences(model, prompts, greedy, EOS, PAD, progress=False)
    alone = [sample_sequences(model, [p], greedy, EOS, PAD, progress=False)[0] for p in prompts]
    # Equal up to any argmax that rounding could flip (the bound of the larger fixture Llama over-counts this one).
    assert_same_greedy(model, prompts, [s.token_ids for s in batched], [s.token_ids for s in alone],
                       fp32_reorder_rtol(tiny_llama_terms(positions=9)))


def test_top_p_keeps_only_the_nucleus() -> None:
    model = tiny_vocab_model(1)
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([[BOS]])).logits[0, -1], dim=-1)
    top = int(p.argmax())
    settings = SamplingSettings(num_samples=300, max_new_tokens=1, top_p=float(p.max()) * 0.99, batch_size=100)
    samples = sample_sequences(model, [[BOS]] * 300, settings, EOS, PAD, progress=False)
    assert {s.token_ids[0] for s in samples} == {top}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="top_p"):
        SamplingSettings(top_p=0.0)
    with pytest.raises(ValueError, match="num_samples"):
        SamplingSettings(num_samples=0)


def test_chat_prompt_and_records(tokenizer) -> None:  # noqa: ANN001
    ids = context_free_prompt(tokenizer, "chat")
    assert ids[0] == tokenizer.bos_token_id and len(ids) > 1
    model = make_model(tokenizer)
    samples = generate_context_free(model, tokenizer, SamplingSettings(num_samples=2, max_new_tokens=5, prompt="chat"),
                                    progress=False)
    record = sample_record(samples[0], tokenizer, "chat")
    assert set(record) == {"text", "token_ids", "finished"} and record["token_ids"] == samples[0].token_ids


def test_the_reserved_kv_cache_draws_the_samples_dynamic_cache_draws(tokenizer, monkeypatch) -> None:  # noqa: ANN001
    """Issue 28: the sampler's cache writes each token in place; the logits, hence the draws, are unchanged."""
    import forgetless.replay.generate as sampler
    from transformers import DynamicCache

    model = make_model(tokenizer, seed=5)
    settings = SamplingSettings(num_samples=6, max_new_tokens=10, seed=3, batch_size=3)
    prompts = [[tokenizer.bos_token_id], [tokenizer.bos_token_id, 40, 41]] * 3
    reserved = sample_sequences(model, prompts, settings, tokenizer.eos_token_id, tokenizer.pad_token_id, False)
    monkeypatch.setattr(sampler, "reserved_cache", lambda reserve: DynamicCache())
    dynamic = sample_sequences(model, prompts, settings, tokenizer.eos_token_id, tokenizer.pad_token_id, False)
    assert [s.token_ids for s in reserved] == [s.token_ids for s in dynamic]
    assert len({tuple(s.token_ids) for s in reserved}) > 1  # real draws, not one repeated sequence
