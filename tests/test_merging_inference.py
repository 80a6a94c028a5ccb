"""Output ensemble, in-memory α sweeps, the forgetting budget, and LM-Cocktail weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from forgetless.evaluation.codelength import code_length
from forgetless.merging import MergeError, OutputEnsemble
from forgetless.merging.budget import choose_alpha
from forgetless.merging.cocktail import Cocktail, cocktail_weights
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.sweep import alpha_sweep
from tests.conftest import TEXT, make_model
from tests.tolerance import assert_same_greedy, fp32_reorder_rtol, tiny_llama_terms

TEXTS = TEXT[:4]


@pytest.fixture(scope="module")
def pair(tokenizer):
    return make_model(tokenizer, 0).eval(), make_model(tokenizer, 1).eval()


def batch(tokenizer):
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def test_ensemble_ends_reproduce_each_model(pair, tokenizer):
    base, ft = pair
    ids, mask = batch(tokenizer)
    with torch.no_grad():
        for alpha, model in ((0.0, base), (1.0, ft)):
            got = OutputEnsemble(base, ft, alpha)(input_ids=ids, attention_mask=mask).logits
            want = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)
            assert torch.equal(got, want)
    # Through the evaluation code, exactly as for a plain model.
    # The ensemble scores with its cache and log_softmax, the base in one pass: other orders of the same sums.
    texts_tokens = sum(len(tokenizer(t)["input_ids"]) + 2 for t in TEXTS)
    assert code_length(OutputEnsemble(base, ft, 0.0), tokenizer, TEXTS).nats == pytest.approx(
        code_length(base, tokenizer, TEXTS).nats, rel=fp32_reorder_rtol(tiny_llama_terms(256, texts_tokens)), abs=0)


def test_ensemble_mixes_probabilities_per_token(pair, tokenizer):
    base, ft = pair
    ids, mask = batch(tokenizer)
    with torch.no_grad():
        got = OutputEnsemble(base, ft, 0.3)(input_ids=ids, attention_mask=mask).logits
        p = 0.7 * torch.softmax(base(input_ids=ids, attention_mask=mask).logits, -1) \
            + 0.3 * torch.softmax(ft(input_ids=ids, attention_mask=mask).logits, -1)
    torch.testing.assert_close(got.exp(), p, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(got.shape[:2]))


def test_ensemble_generates_like_its_model_at_the_ends(pair, tokenizer):
    base, ft = pair
    prompts = tokenizer(["In the beginning", "The quick brown fox jumps"], padding=True, padding_side="left",
                        return_tensors="pt")
    kwargs = dict(max_new_tokens=8, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    for alpha, model in ((0.0, base), (1.0, ft)):
        want = model.generate(**prompts, **kwargs)
        got = OutputEnsemble(base, ft, alpha).generate(**prompts, **kwargs)
        assert torch.equal(got, want)
    mixed = OutputEnsemble(base, ft, 0.5).generate(**prompts, **kwargs)
    assert mixed.shape[0] == 2 and mixed.shape[1] <= prompts["input_ids"].shape[1] + 8


def test_ensemble_refuses_alpha_outside_unit_interval(pair):
    with pytest.raises(MergeError, match=r"alpha=-0.1: expected a number in \[0, 1\]"):
        OutputEnsemble(*pair, -0.1)


def test_alpha_sweep_in_memory_hits_both_ends_and_writes_nothing(saved_models, tokenizer, tmp_path):
    base, ft = saved_models[0], saved_models[1]
    model = make_model(tokenizer, 7).eval()
    before = sorted(p.name for p in base.parent.iterdir())
    base_w, ft_w = (Checkpoint(p) for p in (base, ft))

    def evaluate(m):
        state = m.state_dict()
        name = "model.layers.0.mlp.up_proj.weight"
        return {"is_base": torch.equal(state[name], base_w.read(name)), "is_ft": torch.equal(state[name], ft_w.read(name)),
                "nats": code_length(m, tokenizer, TEXTS).nats_per_token}

    curve = alpha_sweep(model, base, ft, [0.0, 0.5, 1.0], evaluate)
    assert [p["alpha"] for p in curve] == [0.0, 0.5, 1.0]
    assert [(p["is_base"], p["is_ft"]) for p in curve] == [(True, False), (False, False), (False, True)]
    base_model = make_model(tokenizer, 0).eval()
    assert curve[0]["nats"] == pytest.approx(code_length(base_model, tokenizer, TEXTS).nats_per_token, rel=1e-6)
    assert sorted(p.name for p in base.parent.iterdir()) == before
    assert list(tmp_path.iterdir()) == []


def test_budget_picks_best_domain_score_within_forgetting():
    curve = [
        {"alpha": 0.0, "general_nats": 2.00, "exact_match": 0.10},
        {"alpha": 0.5, "general_nats": 2.05, "exact_match": 0.40},
        {"alpha": 0.75, "general_nats": 2.15, "exact_match": 0.55},
        {"alpha": 1.0, "general_nats": 2.40, "exact_match": 0.50},
    ]
    choice = choose_alpha(curve, 0.2, "nats")
    assert choice.chosen["alpha"] == 0.75
    assert [p["within_budget"] for p in choice.curve] == [True, True, True, False]
    assert choice.curve[3]["forgetting"] == pytest.approx(0.40)
    # 5 % of 2.00 nats is 0.10 nats: only alpha 0 and 0.5 qualify.
    percent = choose_alpha(curve, 5, "percent")
    assert percent.chosen["alpha"] == 0.5
    assert percent.curve[2]["forgetting"] == pytest.approx(7.5)
    assert "alpha=0.5 meets the budget of 5 %" in percent.summary()
    assert "+0.3000 over the base" in percent.summary()
    assert "no domain gain over the base is possible" in choose_alpha(curve, 0.01).summary()


def test_budget_says_plainly_when_no_alpha_meets_it():
    curve = [{"alpha": 0.0, "general_nats": 2.0, "exact_match": 0.1},
             {"alpha": 1.0, "general_nats": 1.9, "exact_match": 0.5}]
    choice = choose_alpha(curve, -0.2, "nats")
    assert choice.chosen is None
    assert choice.summary().startswith("no alpha meets the budget of -0.2 nats/token")
    with pytest.raises(MergeError, match="the curve needs alpha=0"):
        choose_alpha(curve[1:], 0.1)
    with pytest.raises(MergeError, match="budget=nan: expected a finite number"):
        choose_alpha(curve, math.nan)


def independent_loss(model, tokenizer, texts: list[str]) -> float:
    """Mean next-token NLL per token, BOS + text + EOS, one text at a time."""
    nats, tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
                                 tokenizer.eos_token_id]])
            logits = model(input_ids=ids).logits[0, :-1]
            nats += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            tokens += ids.size(1) - 1
    return nats / tokens


def test_cocktail_weights_are_softmax_of_independent_losses(saved_models, tokenizer, tmp_path):
    rows = [{"prompt": t[:20], "completion": t[20:]} for t in TEXT[:7]]
    examples = tmp_path / "target.jsonl"
    examples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # candidates="all": forgetless's earlier form, the fine-tuned model inside the softmax too.
    result = Cocktail(examples, finetuned=1, temperature=5.0, alpha=0.4, num_examples=5,
                      candidates="all").coefficients(saved_models)
    texts = [r["prompt"] + r["completion"] for r in rows[:5]]
    losses = [independent_loss(make_model(tokenizer, seed).eval(), tokenizer, texts) for seed in (0, 1, 2)]
    # Batched against one text at a time: the same sums in other orders, over 5 texts' tokens.
    loss_rtol = fp32_reorder_rtol(tiny_llama_terms(256, sum(len(tokenizer(t)["input_ids"]) + 2 for t in texts)))
    assert result.info["losses"] == pytest.approx(losses, rel=loss_rtol, abs=0)
    exps = [math.exp(-loss / 5.0) for loss in losses]
    weights = [e / sum(exps) for e in exps]
    # softmax(-loss / 5): a relative error r in every loss moves each weight by at most 2 r max(loss) / 5.
    assert result.info["cocktail_weights"] == pytest.approx(weights, rel=2 * loss_rtol * max(losses) / 5.0, abs=0)
    assert result.values == pytest.approx([0.6 * weights[0], 0.4 + 0.6 * weights[1], 0.6 * weights[2]])
    assert sum(result.values) == pytest.approx(1.0)


def test_cocktail_weights_and_refusals():
    assert cocktail_weights([1.0, 1.0], 5.0) == pytest.approx([0.5, 0.5])
    assert cocktail_weights([0.0, 5.0], 5.0) == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])
    with pytest.raises(MergeError, match="temperature=0.0: expected a positive number"):
        Cocktail(Path("x"), temperature=0.0, losses_fn=lambda m: [1.0] * len(m)).coefficients([Path("a"), Path("b")])
    with pytest.raises(MergeError, match="finetuned=3: expected the index of a model, 0 to 1"):
        Cocktail(Path("x"), finetuned=3, losses_fn=lambda m: [1.0] * len(m)).coefficients([Path("a"), Path("b")])


def test_ensemble_decodes_with_its_caches_as_without(pair, tokenizer):
    from forgetless.evaluation.generate import greedy_decode
    from forgetless.models import capabilities

    base, ft = pair
    ensemble = OutputEnsemble(base, ft, 0.5)
    assert capabilities(ensemble).kv_cache
    prompts = [tokenizer("In the beginning")["input_ids"], tokenizer("The quick brown fox jumps over")["input_ids"]]
    cached = greedy_decode(ensemble, prompts, 10, tokenizer.eos_token_id, tokenizer.pad_token_id, progress=False)

    class NoCache(torch.nn.Module):  # the same mixture through the whole-prefix path
        def forward(self, input_ids, attention_mask=None, **kwargs):
            return ensemble(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=(attention_mask.cumsum(1) - 1).clamp(min=0))

    slow = NoCache()
    slow.base = base  # a parameter-holding child, so the decoder finds a device
    uncached = greedy_decode(slow, prompts, 10, tokenizer.eos_token_id, tokenizer.pad_token_id, progress=False)
    # The cache sums attention in another order than the whole prefix: equal up to any argmax rounding could flip.
    assert_same_greedy(slow, prompts, cached, uncached, fp32_reorder_rtol(tiny_llama_terms(positions=20)))
