"""Mixing replay into training: the draw, the λ weight, unfinished samples, and a run with the KL log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from forgetless.training.config import TrainConfig
from forgetless.data import PadCollator
from forgetless.data.formats import IGNORE
from forgetless.replay.corpus import corpus_slice, split_text
from forgetless.replay.mixing import load_replay_examples, mix_replay
from forgetless.training.run import train
from forgetless.losses import token_nll
from tests.conftest import make_model, write_jsonl


def _ex(tag: int, n: int = 3) -> dict:
    return {"input_ids": [tag] * n, "labels": [IGNORE] + [tag] * (n - 1)}


def test_ratio_draws_whole_passes_and_weights_replay_only() -> None:
    domain = [_ex(i) for i in range(10)]
    replay = [_ex(100 + i) for i in range(3)]
    mixed = mix_replay(domain, replay, ratio=0.5, weight=0.25, seed=1)
    assert mixed[:10] == domain and all("sample_weight" not in e for e in mixed[:10])
    drawn = mixed[10:]
    assert len(drawn) == 5  # round(0.5 * 10)
    tags = [e["input_ids"][0] for e in drawn]
    assert set(tags) == {100, 101, 102}  # one whole pass before any repeat
    assert sorted(tags[:3]) == [100, 101, 102]
    assert all(e["sample_weight"] == 0.25 for e in drawn)
    assert mix_replay(domain, replay, ratio=0.5, weight=0.25, seed=1) == mixed  # seeded
    assert len(mix_replay(domain, replay)) == 13  # no ratio: every replay example once
    assert "sample_weight" not in replay[0]  # inputs untouched
    with pytest.raises(ValueError, match="ratio"):
        mix_replay(domain, replay, ratio=-1)


def test_unfinished_samples_teach_no_eos_and_empty_ones_are_skipped(tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    path = write_jsonl(tmp_path / "cf.jsonl", [
        {"text": "the word", "finished": True},
        {"text": "the word", "finished": False},
        {"text": "", "finished": True},
    ])
    examples = load_replay_examples(path, tokenizer, max_length=64)
    assert len(examples) == 2
    finished, cut = examples
    assert finished["input_ids"] == cut["input_ids"] and finished["input_ids"][-1] == tokenizer.eos_token_id
    assert finished["labels"][-1] == tokenizer.eos_token_id and cut["labels"][-1] == IGNORE
    assert finished["labels"][1:-1] == finished["input_ids"][1:-1]  # loss on the whole sequence


def test_weighted_replay_loss_is_plain_nll_scaled_by_lambda(tokenizer) -> None:  # noqa: ANN001
    """L = (Σ domain ℓ + λ Σ replay ℓ) / N through the trainer's loss."""
    from transformers import TrainingArguments

    from forgetless.objectives import build_objective
    from forgetless.training.trainer import ForgetlessTrainer

    model = make_model(tokenizer)
    domain = [{"input_ids": [1, 5, 6, 7], "labels": [IGNORE, IGNORE, 6, 7]}]
    replay = [{"input_ids": [1, 8, 9, 10, 11], "labels": [IGNORE, 9, 10, 11, 12]}]
    batch = PadCollator(tokenizer.pad_token_id)(mix_replay(domain, replay, weight=0.3))
    args = TrainingArguments(output_dir="/tmp/unused-replay-test", report_to="none", use_cpu=True)
    trainer = ForgetlessTrainer(model=model, args=args, objective=build_objective("nll", {}))
    n = int((batch["labels"][:, 1:] != IGNORE).sum())
    loss = trainer.compute_loss(model, batch, num_items_in_batch=n)
    with torch.no_grad():
        per_token, _ = token_nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                 batch["labels"])
    expected = (per_token[0].sum() + 0.3 * per_token[1].sum()) / n
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_corpus_slice_pieces(tmp_path: Path) -> None:
    assert split_text("a bb ccc dddd", 6) == ["a bb", "ccc", "dddd"]
    path = write_jsonl(tmp_path / "general.jsonl", [{"text": "one two three four five six"}, {"text": "seven eight"}])
    first = corpus_slice(path, 2, max_chars=9, order="first")
    assert first == [{"text": "one two"}, {"text": "three"}]
    drawn = corpus_slice(path, 3, max_chars=9, seed=4)
    assert len(drawn) == 3 and drawn == corpus_slice(path, 3, max_chars=9, seed=4)


def test_training_with_replay_logs_the_kl_estimate(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    replay = write_jsonl(tmp_path / "replay.jsonl", [{"text": f"the word was {i}", "finished": True} for i in range(6)])
    cfg = TrainConfig(
        model=str(tiny_model_dir), data=str(pc_data), output=str(tmp_path / "run"), learning_rate=1e-2, max_steps=4,
        batch_size=4, logging_steps=1, lr_scheduler="constant",
        replay=json.dumps({"data": str(replay), "ratio": 0.5, "weight": 0.5, "kl_eval_samples": 8,
                           "kl_eval_max_new_tokens": 12, "kl_eval_steps": 2}),
    )
    out = train(cfg)
    meta = json.loads((out / "forgetless.json").read_text())
    assert meta["data"]["examples"] == 16 + 8
    logged = [h for h in meta["log_history"] if "replay/kl" in h]
    assert [h["step"] for h in logged] == [2, 4]
    # Training moves the model away from the base: the estimate is positive by the end.
    assert logged[-1]["replay/kl_ci_low"] <= logged[-1]["replay/kl"] <= logged[-1]["replay/kl_ci_high"]
    assert logged[-1]["replay/kl"] > 0
