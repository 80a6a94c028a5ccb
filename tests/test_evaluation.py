"""Evaluation math: code length, bits per byte, batched scoring, greedy decoding, bootstrap, cloze."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from forgetless.bootstrap import bootstrap_difference, bootstrap_ratio
from forgetless.evaluation.cloze import build_cloze, multiple_choice_accuracy
from forgetless.evaluation.codelength import code_length, text_code_lengths
from forgetless.evaluation.exact_match import exact_match, extract_answer
from forgetless.evaluation.generate import greedy_decode
from forgetless.evaluation.scoring import score_pairs
from forgetless.models import capabilities
from tests.conftest import make_model
from tests.tolerance import assert_same_greedy, fp32_reorder_rtol, tiny_llama_terms


class FixedDistribution(nn.Module):
    """Predicts the same distribution ``softmax(logits)`` at every position, whatever the context."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits, requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1).clone())


class PlainWrapper(nn.Module):
    """Hides every optional forward argument (no cache, no logits_to_keep): a user's wrapper."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.inner(input_ids=input_ids, attention_mask=attention_mask).logits)


TEXTS = ["In the beginning was the word.", "The quick brown fox jumps over the lazy dog 0123456789 times.",
         "Answer: 12.", "hello"]


def test_uniform_model_code_length_is_log_vocab(tokenizer) -> None:
    vocab = len(tokenizer)
    measured = code_length(FixedDistribution(torch.zeros(vocab)), tokenizer, TEXTS, window=8, batch_size=3)
    assert measured.nats_per_token == pytest.approx(math.log(vocab), abs=1e-6)
    # Same through a real Llama whose logits are all zero (the logits_to_keep path).
    model = make_model(tokenizer)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    assert capabilities(model).logits_to_keep
    assert code_length(model, tokenizer, TEXTS, window=8).nats_per_token == pytest.approx(math.log(vocab), abs=1e-6)


def test_bits_per_byte_by_hand(tokenizer) -> None:
    vocab = len(tokenizer)
    logits = torch.linspace(-3.0, 2.0, vocab)
    log_p = torch.log_softmax(logits, dim=0).tolist()
    text = "the word was with the model"
    ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    nats = -sum(log_p[t] for t in ids[1:])  # every token after BOS, EOS included
    expected_bpb = nats / math.log(2) / len(text.encode("utf-8"))
    for window in (3, 256):  # windowing must not change a context-free model's code length
        measured = code_length(FixedDistribution(logits), tokenizer, [text], window=window)
        assert measured.tokens == len(ids) - 1
        assert measured.bits_per_byte == pytest.approx(expected_bpb, rel=1e-6)
        assert measured.nats_per_token == pytest.approx(nats / (len(ids) - 1), rel=1e-6)


def test_windows_score_every_token_once(tokenizer) -> None:
    parts = text_code_lengths(make_model(tokenizer), tokenizer, TEXTS, window=5, progress=False)
    for part, text in zip(parts, TEXTS):
        assert part.tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1


@pytest.mark.parametrize(
    ("generation", "answer"),
    [
        (" rate 18 +0=0, SBP 83 +1=1.\nAnswer: 1", "1"),  # chain of thought, then the answer line
        (" Answer: 15 23 61 86 88", "15 23 61 86 88"),  # a list answer
        ("Answer: 4.\n", "4"),  # one trailing period dropped
        ("Answer:7\r\n", "7"),  # no space after the marker, Windows newline
        ("Answer: 1\nAnswer: 2", "2"),  # the last stated answer counts
        ("answer: 2", None),  # the marker is case-sensitive
    ],
)
def test_extraction_formats(generation: str, answer: str | None) -> None:
    assert extract_answer(generation) == answer


@pytest.mark.parametrize("near_miss", ["Answer: 15 23 61 86", "Answer: 15 23 61 86 88 90", "Answer: 15,23,61,86,88",
                                       "Answer: 1523618688", "15 23 61 86 88"])
def test_extraction_rejects_near_misses(near_miss: str) -> None:
    assert not exact_match(near_miss, "15 23 61 86 88")


def _reference_logprob(model: nn.Module, context: list[int], continuation: list[int]) -> float:
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        log_p = torch.log_softmax(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float(), -1)
    return sum(float(log_p[len(context) - 1 + t, tok]) for t, tok in enumerate(continuation))


@pytest.mark.parametrize("wrap", [False, True])
def test_batched_scoring_equals_one_at_a_time(tokenizer, wrap: bool) -> None:
    model = make_model(tokenizer, seed=1)
    scored = PlainWrapper(model) if wrap else model
    rng = np.random.default_rng(0)
    vocab = len(tokenizer)
    pairs = [([tokenizer.bos_token_id, *rng.integers(5, vocab, size=int(rng.integers(0, 30))).tolist()],
              rng.integers(5, vocab, size=int(rng.integers(1, 12))).tolist()) for _ in range(23)]
    batched = score_pairs(scored, pairs, batch_size=8, progress=False)
    single = [score_pairs(scored, [p], batch_size=1, progress=False)[0] for p in pairs]
    # Batch 8 against 1 and against log_softmax: sums in other orders, over up to 42 positions and 11 tokens.
    rel = fp32_reorder_rtol(tiny_llama_terms(positions=42, summed=11))
    for b, s, (context, continuation) in zip(batched, single, pairs):
        assert b.logprob == pytest.approx(s.logprob, rel=rel, abs=0)
        assert b.logprob == pytest.approx(_reference_logprob(model, context, continuation), rel=rel, abs=0)
        assert b.greedy == s.greedy and b.tokens == len(continuation)


def test_greedy_flag(tokenizer) -> None:
    model = make_model(tokenizer, seed=2)
    context = [tokenizer.bos_token_id, 40, 41]
    continuation = greedy_decode(model, [context], 4, None, tokenizer.pad_token_id, progress=False)[0]
    assert score_pairs(model, [(context, continuation)], progress=False)[0].greedy
    wrong = [*continuation[:-1], (continuation[-1] + 1) % len(tokenizer)]
    assert not score_pairs(model, [(context, wrong)], progress=False)[0].greedy


@pytest.mark.parametrize("wrap", [False, True])
def test_batched_greedy_matches_generate_with_per_sequence_stop(tokenizer, wrap: bool) -> None:
    model = make_model(tokenizer, seed=3)
    rng = np.random.default_rng(1)
    prompts = [[tokenizer.bos_token_id, *rng.integers(5, len(tokenizer), size=int(n)).tolist()]
               for n in rng.integers(1, 15, size=10)]

    def generate_one(prompt: list[int], eos: int | None) -> list[int]:
        ids = torch.tensor([prompt])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)[0, len(prompt):].tolist()
        return out[: out.index(eos)] if eos in out else out

    free = [generate_one(p, None) for p in prompts]
    # A stand-in EOS the random model emits at different steps in different sequences,
    # so some sequences stop early and leave the batch while others go on.
    counts = np.bincount([t for seq in free for t in seq[1:]])
    eos = int(counts.argmax())
    reference = [generate_one(p, eos) for p in prompts]
    assert len({len(r) for r in reference}) > 1
    ours = greedy_decode(PlainWrapper(model) if wrap else model, prompts, 12, eos, tokenizer.pad_token_id,
                         batch_size=4, progress=False)
    # Batch 4, left-padded, against one at a time: equal up to any argmax that rounding could flip.
    assert_same_greedy(model, prompts, ours, reference, fp32_reorder_rtol(tiny_llama_terms(positions=27)))


def test_bootstrap_covers_true_mean_at_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    sims, n, hits_mean, hits_diff, hits_ratio = 300, 80, 0, 0, 0
    for s in range(sims):
        x = rng.exponential(1.0, size=n)  # skewed, true mean 1
        interval = bootstrap_ratio(x, resamples=1000, seed=s)
        hits_mean += interval.low <= 1.0 <= interval.high
        # Paired difference with true mean difference 0.5: y = x + noise + 0.5.
        y = x + rng.normal(0.5, 1.0, size=n)
        diff = bootstrap_difference((y, None), (x, None), resamples=1000, seed=s)
        hits_diff += diff.low <= 0.5 <= diff.high
        # Ratio of sums (code length): tokens vary per text, true nats/token 2.0.
        tokens = rng.integers(10, 200, size=n).astype(float)
        nats = 2.0 * tokens + rng.normal(0, 1.0, size=n) * np.sqrt(tokens)
        ratio = bootstrap_ratio(nats, tokens, resamples=1000, seed=s)
        hits_ratio += ratio.low <= 2.0 <= ratio.high
    for hits in (hits_mean, hits_diff, hits_ratio):
        # Nominal 0.95; 300 simulations give a standard error of 0.013, and percentile
        # intervals under-cover a little at n = 80 on skewed data.
        assert 0.90 <= hits / sims <= 0.99, hits / sims


def test_bootstrap_difference_of_identical_models_is_zero() -> None:
    x = np.random.default_rng(0).random(50)
    interval = bootstrap_difference((x, None), (x, None))
    assert interval.estimate == 0 and interval.low == 0 and interval.high == 0


def test_bootstrap_rejects_unpaired_units() -> None:
    with pytest.raises(ValueError, match="same items"):
        bootstrap_difference(([1.0, 0.0], None), ([1.0], None))


WORDS = [" ".join(f"w{d}x{i}" for i in range(120)) for d in range(5)]


def test_cloze_is_deterministic_and_well_formed() -> None:
    items = build_cloze(WORDS, n_items=12, context_words=10, continuation_words=3, seed=0)
    assert items == build_cloze(WORDS, n_items=12, context_words=10, continuation_words=3, seed=0)
    assert len(items) == 12
    for item in items:
        source = WORDS[item["doc"]]
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        # The labelled choice is the true continuation of the context in its document.
        assert item["context"] + " " + item["choices"][item["label"]] in source
        for k, choice in enumerate(item["choices"]):
            if k != item["label"]:
                assert choice not in source  # distractors come from other documents


def test_multiple_choice_picks_highest_likelihood(tokenizer) -> None:
    items = build_cloze(WORDS, n_items=6, context_words=5, continuation_words=2, seed=1)
    model = make_model(tokenizer, seed=4)
    result = multiple_choice_accuracy(model, tokenizer, items, batch_size=5, progress=False)
    from forgetless.evaluation.scoring import encode_pair

    # Batch 5 against one at a time: an argmax over choices whose scores are within rounding may flip.
    rel = fp32_reorder_rtol(tiny_llama_terms(positions=24, summed=12))
    expected, clear = [], []
    for item in items:
        scores = [_reference_logprob(model, *encode_pair(tokenizer, item["context"], " " + c)) for c in item["choices"]]
        expected.append(int(int(np.argmax(scores)) == item["label"]))
        best, second = sorted(scores)[-2:][::-1]
        clear.append(best - second > rel * max(abs(x) for x in scores))
    assert sum(clear) >= 5 and result["n"] == 6
    assert [c for c, ok in zip(result["correct"], clear) if ok] == [e for e, ok in zip(expected, clear) if ok]


def test_shared_context_scoring_equals_reference(tokenizer) -> None:
    model = make_model(tokenizer, seed=6)
    rng = np.random.default_rng(2)
    vocab = len(tokenizer)
    contexts = [[tokenizer.bos_token_id, *rng.integers(5, vocab, size=int(n)).tolist()] for n in (0, 3, 9, 17, 4)]
    pairs = [(c, rng.integers(5, vocab, size=int(rng.integers(1, 6))).tolist()) for c in contexts for _ in range(3)]
    pairs.append((contexts[2], [7]))  # a one-token continuation next to longer ones
    shared = score_pairs(model, pairs, batch_size=2, progress=False)
    flat = score_pairs(model, pairs, batch_size=4, progress=False, share_prefix=False)
    rel = fp32_reorder_rtol(tiny_llama_terms(positions=22, summed=5))  # contexts of up to 18, continuations of 5
    for s, f, (context, continuation) in zip(shared, flat, pairs):
        assert s.logprob == pytest.approx(_reference_logprob(model, context, continuation), rel=rel, abs=0)
        assert s.logprob == pytest.approx(f.logprob, rel=rel, abs=0) and s.greedy == f.greedy
