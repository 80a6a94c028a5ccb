"""The one measurement pipeline (``evaluation.measure``): the same per-item values as the primitives the study
and ``forgetless eval`` used to call separately, a loss checked against plain torch, and the paired interval
checked against a bootstrap written out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from forgetless.evaluation.codelength import text_code_lengths
from forgetless.evaluation.domain import domain_accuracy
from forgetless.evaluation.measure import Measurement, interval, measure_model, paired_difference, sample_nll
from forgetless.evaluation.report import EvalSettings, ModelEval, evaluate, forgetting_and_gain
from forgetless.evaluation.scoring import score_pairs
from forgetless.replay.generate import Sample
from forgetless.replay.kl_estimate import estimate_from_nll, sequence_nll
from forgetless.study.running.measure import measure, paired_interval
from tests.conftest import TEXT, make_model, write_jsonl
from tests.tolerance import fp32_reorder_rtol, tiny_llama_terms

GENERAL = [TEXT[0], TEXT[1] * 3, TEXT[2], "hello"]  # the second is cut into several windows


@pytest.fixture
def domain_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "domain.jsonl", [
        {"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"} for a in range(3) for b in range(2)])


def samples(tokenizer, n: int = 6) -> list[Sample]:  # noqa: ANN001
    rng = torch.Generator().manual_seed(0)
    return [Sample(prompt_ids=[tokenizer.bos_token_id],
                   token_ids=torch.randint(5, len(tokenizer), (int(k),), generator=rng).tolist())
            for k in torch.randint(1, 20, (n,), generator=rng)]


def test_one_general_loss_by_hand(tokenizer) -> None:  # noqa: ANN001
    """The nats of a one-window text are the summed cross-entropy of every token after BOS, EOS included."""
    model = make_model(tokenizer, seed=3).eval()
    text = GENERAL[0]
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
                         tokenizer.eos_token_id]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]  # position t predicts token t + 1
    expected = torch.nn.functional.cross_entropy(logits.double(), ids[0, 1:], reduction="sum").item()
    measured = measure_model(model, tokenizer, general_texts=[text])
    assert measured.general_nats == [pytest.approx(expected, rel=1e-5)]
    assert measured.general_tokens == [ids.shape[1] - 1]
    assert measured.general_bytes == [len(text.encode("utf-8"))]
    assert measured.domain_correct is None and measured.kl_nll is None


def test_same_per_item_values_as_the_old_study_and_eval_paths(tokenizer, domain_file: Path) -> None:  # noqa: ANN001
    model, drawn = make_model(tokenizer, seed=1), samples(tokenizer)
    # What study/running/measure.py computed before: code length at batch 16, exact match, sequence_nll for the KL.
    lengths = text_code_lengths(model, tokenizer, GENERAL, progress=False)
    accuracy = domain_accuracy(model, tokenizer, domain_file, max_new_tokens=4, progress=False)
    old_kl = sequence_nll(model, drawn).tolist()
    # What evaluation/report.py computed before: code length at --batch-size, exact match, score_pairs for the KL.
    eval_lengths = text_code_lengths(model, tokenizer, GENERAL, 256, 3, progress=False)
    eval_kl = score_pairs(model, [(s.prompt_ids, s.token_ids) for s in drawn], 3, progress=False)
    # Batch 3 against batch 16 (here and below): padding changes the matmul shapes, so the sums may round
    # differently (seen on AMD EPYC). An item is one window of up to 256 tokens.
    terms = tiny_llama_terms(positions=256, summed=256)

    new = measure_model(model, tokenizer, GENERAL, domain_file, kl_samples=drawn, max_new_tokens=4)
    assert new.general_nats == [c.nats for c in lengths] and new.general_tokens == [c.tokens for c in lengths]
    assert new.general_nats == pytest.approx([c.nats for c in eval_lengths], rel=fp32_reorder_rtol(terms), abs=0)
    assert new.domain_correct == [int(p["correct"]) for p in accuracy["predictions"]]
    assert new.predictions == accuracy["predictions"]
    assert new.kl_nll == pytest.approx([-s.logprob for s in eval_kl], rel=fp32_reorder_rtol(terms), abs=0)
    assert new.kl_nll == pytest.approx(old_kl, abs=1e-4)  # two scorers, the same NLL up to float rounding
    assert new.kl_tokens == [len(s.token_ids) for s in drawn]

    cell = measure(model, tokenizer, GENERAL, str(domain_file), kl_samples=drawn, validation=str(domain_file),
                   validation_limit=4)
    assert cell["general_nats"] == new.general_nats and cell["general_bytes"] == sum(new.general_bytes or [])
    assert cell["kl_nll"] == new.kl_nll and cell["validation_correct"] == cell["domain_correct"][:4]
    assert set(cell) == {"general_nats", "general_tokens", "general_bytes", "domain_correct", "validation_correct",
                         "kl_nll", "examples", "answer_extraction"}  # the keys of the study's cached eval cells
    assert cell["answer_extraction"] == "answer_marker"  # cells written before lack it; rows read them as this

    settings = EvalSettings(general=str(write_jsonl(domain_file.parent / "general.jsonl",
                                                    [{"text": t} for t in GENERAL])),
                            domain=str(domain_file), cloze=False, max_new_tokens=4, batch_size=3, progress=False)
    units = evaluate(model, tokenizer, settings).units
    (nats, tokens), (new_nats, new_tokens) = units["nats_per_token"], new.units()["nats_per_token"]
    assert tokens == new_tokens and nats == pytest.approx(new_nats, rel=fp32_reorder_rtol(terms), abs=0)
    # At the same batch size the computation is the same, so every unit is equal bit for bit, greedy answers too
    # (at another batch size an argmax could flip where two logits are within rounding).
    same_batch = measure_model(model, tokenizer, GENERAL, domain_file, batch_size=3, general_batch_size=3,
                               max_new_tokens=4).units()
    assert units["nats_per_token"] == same_batch["nats_per_token"]
    assert units["exact_match"] == same_batch["exact_match"]


def test_paired_interval_is_the_bootstrap_written_out(tokenizer) -> None:  # noqa: ANN001
    """Resample the same item indices for both models, take the metric difference, read off the percentiles."""
    after = np.array([3.0, 0.5, 2.0, 7.0, 1.0, 4.5, 2.5])
    before = np.array([1.0, 0.0, 2.5, 3.0, 1.5, 1.0, 2.0])
    tokens = np.array([2.0, 1.0, 3.0, 4.0, 1.0, 3.0, 2.0])
    resamples, seed = 400, 11
    draws = np.random.default_rng(seed).integers(0, len(after), size=(resamples, len(after)))  # [R, n] item indices
    mean_diff = [after[i].mean() - before[i].mean() for i in draws]
    ratio_diff = [after[i].sum() / tokens[i].sum() - before[i].sum() / tokens[i].sum() for i in draws]

    got = paired_difference((list(after), None), (list(before), None), 0.9, resamples, seed)
    assert got.estimate == pytest.approx(after.mean() - before.mean())
    assert [got.low, got.high] == pytest.approx(list(np.quantile(mean_diff, [0.05, 0.95])))
    got = paired_difference((list(after), list(tokens)), (list(before), list(tokens)), 0.9, resamples, seed)
    assert [got.low, got.high] == pytest.approx(list(np.quantile(ratio_diff, [0.05, 0.95])))
    single = interval((list(after), None), 0.9, resamples, seed)
    assert [single.low, single.high] == pytest.approx(list(np.quantile([after[i].mean() for i in draws], [0.05, 0.95])))

    # The study's KL interval, the KL estimate's, and forgetless eval's cf_nll forgetting are this same interval.
    m = {"general_nats": [1.0] * 7, "general_tokens": [1] * 7, "domain_correct": [0] * 7}
    expected = paired_difference((list(after), None), (list(before), None), resamples=resamples, seed=seed)
    assert paired_interval({**m, "kl_nll": list(after)}, {**m, "kl_nll": list(before)}, "kl", resamples, seed) == (
        expected.low, expected.high)
    kl = estimate_from_nll(torch.tensor(after), torch.tensor(before), torch.tensor(tokens), resamples, seed)
    assert (kl.kl, kl.ci_low, kl.ci_high) == pytest.approx((expected.estimate, expected.low, expected.high))
    per_token = paired_difference((list(after), list(tokens)), (list(before), list(tokens)), resamples=resamples,
                                  seed=seed)
    assert (kl.ci_low_per_token, kl.ci_high_per_token) == pytest.approx((per_token.low, per_token.high))
    evals = [ModelEval(summary={}, units=Measurement(kl_nll=list(v), kl_tokens=list(tokens)).units())
             for v in (after, before)]
    reported = forgetting_and_gain(evals[0], evals[1], EvalSettings(resamples=resamples, seed=seed))["forgetting"]
    assert reported["cf_nll"]["ci"] == pytest.approx([expected.low, expected.high])
    assert reported["cf_nll_per_token"]["ci"] == pytest.approx([per_token.low, per_token.high])


def test_sample_nll_of_a_sample_is_its_summed_token_nll(tokenizer) -> None:  # noqa: ANN001
    model = make_model(tokenizer, seed=2).eval()
    sample = samples(tokenizer, 1)[0]
    ids = torch.tensor([sample.prompt_ids + sample.token_ids])
    with torch.no_grad():
        log_p = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    expected = -log_p[torch.arange(len(sample.token_ids)), ids[0, 1:]].sum().item()
    nll, tokens = sample_nll(model, [sample])
    assert nll == [pytest.approx(expected, rel=1e-5)] and tokens == [len(sample.token_ids)]
