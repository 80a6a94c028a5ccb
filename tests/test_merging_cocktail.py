"""LM-Cocktail as its authors define it: coefficients of each variant by hand, the ends of α,
lm-cocktail's loss convention, and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from forgetless.cli import main
from forgetless.merging import MergeError
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.cocktail import Cocktail, mix_coefficients
from forgetless.merging.cocktail_loss import reference_batches, reference_loss
from forgetless.merging.engine import merge_checkpoints
from tests.conftest import make_model, write_jsonl

PATHS = [Path(f"m{i}") for i in range(4)]


def softmax_by_hand(losses: list[float], temperature: float) -> list[float]:
    exps = [math.exp(-loss / temperature) for loss in losses]
    return [e / sum(exps) for e in exps]


def fixed_losses(table: dict[str, float], seen: list[list[str]]):
    """A losses_fn that records which models it was asked about."""
    def losses(models: list[Path]) -> list[float]:
        seen.append([m.name for m in models])
        return [table[m.name] for m in models]
    return losses


LOSSES = {"m0": 2.0, "m1": 0.5, "m2": 3.0, "m3": 4.0}


def test_paper_form_weighs_base_and_peers_only_and_adds_the_finetuned_model_through_alpha():
    seen: list[list[str]] = []
    result = Cocktail(finetuned=1, alpha=0.3, temperature=5.0,
                      losses_fn=fixed_losses(LOSSES, seen)).coefficients(PATHS)
    assert seen == [["m0", "m2", "m3"]]  # the fine-tuned model's loss is never asked for
    w = softmax_by_hand([2.0, 3.0, 4.0], 5.0)
    assert result.values == pytest.approx([0.7 * w[0], 0.3, 0.7 * w[1], 0.7 * w[2]], rel=1e-12)
    weights = result.info["cocktail_weights"]
    assert weights[1] is None and [weights[0], weights[2], weights[3]] == pytest.approx(w, rel=1e-12)
    assert result.info["losses"] == [2.0, None, 3.0, 4.0]
    assert sum(result.values) == pytest.approx(1.0)


def test_finetuned_model_may_sit_anywhere_in_the_list():
    result = Cocktail(finetuned=3, alpha=0.6, losses_fn=fixed_losses(LOSSES, [])).coefficients(PATHS)
    w = softmax_by_hand([2.0, 0.5, 3.0], 5.0)
    assert result.values == pytest.approx([0.4 * w[0], 0.4 * w[1], 0.4 * w[2], 0.6], rel=1e-12)


def test_candidates_all_is_the_earlier_form_with_the_finetuned_model_in_the_softmax():
    result = Cocktail(finetuned=1, alpha=0.3, candidates="all", losses_fn=fixed_losses(LOSSES, [])).coefficients(PATHS)
    w = softmax_by_hand([2.0, 0.5, 3.0, 4.0], 5.0)
    assert result.values == pytest.approx([0.7 * w[0], 0.3 + 0.7 * w[1], 0.7 * w[2], 0.7 * w[3]], rel=1e-12)
    # The fine-tuned model keeps more than alpha: what the paper's form avoids.
    assert result.values[1] > 0.3


def test_mono_specialist_is_alpha_finetuned_plus_rest_base_without_examples():
    def never(models: list[Path]) -> list[float]:
        raise AssertionError("mono-specialist needs no losses")

    result = Cocktail(variant="mono-specialist", finetuned=1, alpha=0.3, losses_fn=never).coefficients(PATHS[:2])
    assert result.values == [0.7, 0.3]
    assert Cocktail(variant="mono-specialist", finetuned=0, alpha=0.3).coefficients(PATHS[:2]).values == [0.3, 0.7]
    # The paper's form with no peers is the same merge, and needs no examples either.
    assert Cocktail(finetuned=1, alpha=0.3).coefficients(PATHS[:2]).values == [0.7, 0.3]


def test_without_finetuning_mixes_existing_models_only():
    seen: list[list[str]] = []
    result = Cocktail(variant="without-finetuning", temperature=2.0,
                      losses_fn=fixed_losses(LOSSES, seen)).coefficients(PATHS[:3])
    assert seen == [["m0", "m1", "m2"]]
    assert result.values == pytest.approx(softmax_by_hand([2.0, 0.5, 3.0], 2.0), rel=1e-12)
    assert result.info["finetuned"] is None and result.info["alpha"] is None


@pytest.mark.parametrize("rule, n, match", [
    (Cocktail(variant="without-finetuning", alpha=0.5), 3, "without-finetuning has no fine-tuned model: alpha"),
    (Cocktail(variant="without-finetuning"), 1, "without-finetuning needs at least 2 models"),
    (Cocktail(variant="mono-specialist"), 3, "mono-specialist takes exactly 2 models"),
    (Cocktail(variant="mono-specialist", candidates="all"), 2, "candidates=all does not apply"),
    (Cocktail(finetuned=4), 4, "finetuned=4: expected the index of a model, 0 to 3"),
    (Cocktail(alpha=1.5), 3, r"alpha=1.5: expected a number in \[0, 1\]"),
    (Cocktail(), 3, "cocktail weighting 2 models needs examples"),
    (Cocktail(), 1, "cocktail needs at least 2 models"),
])
def test_refusals_name_what_is_wrong(rule, n, match):
    with pytest.raises(MergeError, match=match):
        rule.coefficients(PATHS[:n] if n <= 4 else [Path(f"m{i}") for i in range(n)])


def test_mix_coefficients_ends_are_exact():
    assert mix_coefficients(3, [0, 2], [0.25, 0.75], 1, 1.0) == [0.0, 1.0, 0.0]
    assert mix_coefficients(3, [0, 2], [0.25, 0.75], 1, 0.0) == [0.25, 0.0, 0.75]
    assert mix_coefficients(2, [0, 1], [0.25, 0.75], None, 0.0) == [0.25, 0.75]


def test_alpha_one_is_the_finetuned_model_bit_for_bit_and_alpha_zero_the_mix_of_the_others(saved_models, tmp_path):
    table = {p.name: loss for p, loss in zip(saved_models, (2.0, 0.1, 3.0))}
    rule = Cocktail(finetuned=1, alpha=1.0, losses_fn=fixed_losses(table, []))
    merge_checkpoints(saved_models, rule.coefficients(saved_models).values, tmp_path / "one", config_from=1,
                      progress=False)
    merged, ft = Checkpoint(tmp_path / "one"), Checkpoint(saved_models[1])
    assert set(merged.tensors) == set(ft.tensors)
    for name in ft.tensors:
        assert torch.equal(merged.read(name), ft.read(name)), name

    rule.alpha = 0.0
    values = rule.coefficients(saved_models).values
    w = softmax_by_hand([2.0, 3.0], 5.0)
    assert values[1] == 0.0 and values == pytest.approx([w[0], 0.0, w[1]], rel=1e-12)
    merge_checkpoints(saved_models, values, tmp_path / "zero", config_from=1, progress=False)
    zero, base, peer = Checkpoint(tmp_path / "zero"), Checkpoint(saved_models[0]), Checkpoint(saved_models[2])
    for name in ft.tensors:
        want = w[0] * base.read(name) + w[1] * peer.read(name)
        torch.testing.assert_close(zero.read(name), want, rtol=1e-6, atol=1e-7)
    name = "model.layers.0.mlp.down_proj.weight"  # random init: differs between the three models
    assert not torch.allclose(zero.read(name), ft.read(name), atol=1e-3)


def test_paper_losses_from_examples_are_the_candidates_own(saved_models, tokenizer, tmp_path):
    examples = write_jsonl(tmp_path / "target.jsonl", [{"prompt": "Sum 1 and 2.\n", "completion": " Answer: 3"},
                                                        {"prompt": "Sum 2 and 2.\n", "completion": " Answer: 4"}])
    paper = Cocktail(examples, finetuned=1, alpha=0.5).coefficients(saved_models)
    every = Cocktail(examples, finetuned=1, alpha=0.5, candidates="all").coefficients(saved_models)
    # The same loss per model whichever set it is computed in.
    assert paper.info["losses"][0] == every.info["losses"][0] and paper.info["losses"][2] == every.info["losses"][2]
    assert paper.info["losses"][1] is None
    w = softmax_by_hand([paper.info["losses"][0], paper.info["losses"][2]], 5.0)
    assert paper.values == pytest.approx([0.5 * w[0], 0.5, 0.5 * w[1]], rel=1e-9)


def test_reference_batches_follow_lm_cocktail(tokenizer):
    pairs = [("Sum 1 and 2.", "3"), ("In the beginning", "was the word"), ("Hello", "there")]
    batches = reference_batches(tokenizer, pairs, batch_size=2)
    assert [b["input_ids"].shape[0] for b in batches] == [2, 1]
    for (source, target), (b, row) in zip(pairs, [(0, 0), (0, 1), (1, 0)]):
        ids = tokenizer.encode(source + " " + target) + [tokenizer.eos_token_id]
        prompt = len(tokenizer.encode(source))
        got_ids = batches[b]["input_ids"][row].tolist()
        got_labels = batches[b]["labels"][row].tolist()
        assert got_ids[: len(ids)] == ids and set(got_ids[len(ids):]) <= {tokenizer.pad_token_id}
        assert got_labels[:prompt] == [-100] * prompt and got_labels[prompt : len(ids)] == ids[prompt:]
        assert set(got_labels[len(ids):]) <= {-100}


def test_reference_loss_is_the_mean_of_per_batch_token_means(tokenizer):
    """Against an independent computation: each example alone, unpadded, NLL summed over its output."""
    model = make_model(tokenizer, 3).eval()
    pairs = [("Sum 1 and 2.", "3"), ("In the beginning", "was the word, and the word"), ("Hello", "there")]
    sums, counts = [], []
    with torch.no_grad():
        for source, target in pairs:
            ids = tokenizer.encode(source + " " + target) + [tokenizer.eos_token_id]
            prompt = len(tokenizer.encode(source))
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            nll = torch.nn.functional.cross_entropy(logits[prompt - 1 : -1], torch.tensor(ids[prompt:]),
                                                    reduction="sum")
            sums.append(float(nll))
            counts.append(len(ids) - prompt)
    want = ((sums[0] + sums[1]) / (counts[0] + counts[1]) + sums[2] / counts[2]) / 2
    got = reference_loss(model, reference_batches(tokenizer, pairs, batch_size=2))
    assert got == pytest.approx(want, rel=1e-5)
    pooled = sum(sums) / sum(counts)  # per token over all examples: a different number
    assert abs(got - pooled) > 1e-3


def test_cli_variants_write_their_coefficients(saved_models, tmp_path, capsys):
    m = [str(p) for p in saved_models]
    out = tmp_path / "mono"
    assert main(["merge", "--rule", "cocktail", "--variant", "mono-specialist", "--models", m[0], m[1],
                 "--alpha", "0.25", "--output", str(out)]) == 0
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["coefficients"] == [0.75, 0.25] and record["variant"] == "mono-specialist"
    examples = write_jsonl(tmp_path / "target.jsonl", [{"input": "Sum 1 and 2.", "output": "3"}] * 3)
    out = tmp_path / "paper"
    assert main(["merge", "--rule", "cocktail", "--models", *m, "--examples", str(examples), "--cocktail-loss",
                 "lm-cocktail", "--output", str(out)]) == 0
    record = json.loads((out / "forgetless-merge.json").read_text())
    w = softmax_by_hand([record["losses"][0], record["losses"][2]], 5.0)
    assert record["coefficients"] == pytest.approx([0.5 * w[0], 0.5, 0.5 * w[1]], rel=1e-9)
    printed = capsys.readouterr().out
    assert "softmax(-L/T)" in printed
    assert main(["merge", "--rule", "cocktail", "--variant", "without-finetuning", "--models", *m, "--examples",
                 str(examples), "--alpha", "0.5", "--output", str(tmp_path / "x")]) == 2
    assert "alpha does not apply" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
