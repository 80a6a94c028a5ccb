"""The training engine: outputs, determinism, resuming, gradient-accumulation invariance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from forgetless.training.config import TrainConfig
from forgetless.data import DataError, PadCollator, load_examples
from forgetless.objectives import build_objective
from forgetless.training.run import train
from forgetless.losses import token_nll
from forgetless.training.trainer import ForgetlessTrainer
from tests.conftest import make_model, write_jsonl
from tests.tolerance import fp32_reorder_rtol, tiny_llama_terms


def _cfg(model_dir: Path, data: Path, output: Path, **kw) -> TrainConfig:
    # fp32 pinned: resuming and seeding are checked bit for bit, whatever `auto` picks here.
    values = dict(model=str(model_dir), data=str(data), output=str(output), learning_rate=1e-2, max_steps=6,
                  batch_size=4, save_steps=3, logging_steps=1, lr_scheduler="constant", precision="fp32")
    values.update(kw)
    return TrainConfig(**values)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_train_writes_a_loadable_model_and_metadata(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    out = train(_cfg(tiny_model_dir, pc_data, tmp_path / "run"))
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size > 0
    meta = json.loads((out / "forgetless.json").read_text())
    assert meta["config"]["method"] == "nll" and meta["config"]["learning_rate"] == 1e-2
    assert len(meta["data"]["sha256"]) == 64 and meta["data"]["examples"] == 16
    assert meta["metrics"]["train_loss"] > 0
    assert [h["loss"] for h in meta["log_history"] if "loss" in h]
    assert not (tmp_path / "run.work").exists()
    # Training moved the weights.
    base = _weights(tiny_model_dir)
    tuned = _weights(out)
    assert any(not torch.equal(base[k], tuned[k]) for k in base)


def test_same_seed_gives_identical_weights(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    a = _weights(train(_cfg(tiny_model_dir, pc_data, tmp_path / "a")))
    b = _weights(train(_cfg(tiny_model_dir, pc_data, tmp_path / "b")))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Crash(TrainerCallback):
    """Simulates a crash right after the checkpoint at ``step`` is saved."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated crash")


def test_interrupted_run_resumes_to_the_same_weights(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    straight = _weights(train(_cfg(tiny_model_dir, pc_data, tmp_path / "straight")))
    cfg = _cfg(tiny_model_dir, pc_data, tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_Crash(3)])
    assert not (tmp_path / "resumed").exists(), "an interrupted run must not leave an output directory"
    assert (tmp_path / "resumed.work" / "checkpoints" / "checkpoint-3").is_dir()
    out = train(cfg)
    meta = json.loads((out / "forgetless.json").read_text())
    assert meta["resolved"]["resumed_from"].endswith("checkpoint-3")
    resumed = _weights(out)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # train_loss is the whole run's (the Trainer's own covers the 3 resumed steps only); logged losses are
    # rounded to 4 decimals, hence the tolerance.
    whole = json.loads((tmp_path / "straight" / "forgetless.json").read_text())["metrics"]["train_loss"]
    resumed_part = sum(e["loss"] for e in meta["log_history"] if "loss" in e and e["step"] > 3) / 3
    assert meta["metrics"]["train_loss"] == pytest.approx(whole, abs=1e-4)
    assert meta["metrics"]["train_loss_resumed_part"] == pytest.approx(resumed_part, abs=1e-4)
    assert abs(whole - resumed_part) > 1e-3  # the two differ, so the check above tells them apart


def test_bad_data_writes_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "a"}])
    with pytest.raises(DataError, match="line 2, field 'completion'"):
        train(_cfg(tiny_model_dir, data, tmp_path / "run"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_existing_output_is_refused(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(_cfg(tiny_model_dir, pc_data, tmp_path / "run"))


def test_token_nll_matches_model_loss(tokenizer, pc_data: Path) -> None:
    model = make_model(tokenizer)
    batch = PadCollator(tokenizer.pad_token_id)(load_examples(pc_data, tokenizer)[:4])
    out = model(**batch)
    loss, mask = token_nll(out.logits, batch["labels"])
    assert torch.allclose(loss.sum() / mask.sum(), out.loss, atol=1e-6)


def _grads(tokenizer, examples, micro: int, accum: int, tmp_path: Path) -> dict[str, torch.Tensor]:
    """Gradients of one optimizer step of the trainer's loss with a given batch layout."""
    from forgetless.training.run import training_arguments

    model = make_model(tokenizer)
    cfg = TrainConfig(model="x", data="x", output="x", batch_size=micro, grad_accum=accum, max_steps=1,
                      learning_rate=1.0, max_grad_norm=0.0, precision="fp32")  # an exactness test: fp32 pinned
    captured: dict[str, torch.Tensor] = {}

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
            captured.update({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    trainer = ForgetlessTrainer(
        model=model, args=training_arguments(cfg, tmp_path / f"g{micro}x{accum}", save_strategy="no"),
        train_dataset=examples, data_collator=PadCollator(tokenizer.pad_token_id),
        objective=build_objective("nll"), callbacks=[Capture()],
    )
    trainer.train()
    return captured


def test_gradient_accumulation_invariance(tokenizer, tmp_path: Path) -> None:
    # Different lengths, so per-micro-batch means would weight tokens unequally.
    rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + 3 * i)} for i in range(8)]
    examples = load_examples(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer)
    one = _grads(tokenizer, examples, 8, 1, tmp_path)
    four = _grads(tokenizer, examples, 2, 4, tmp_path)
    assert one.keys() == four.keys() and one
    for name in one:
        scale = one[name].abs().max().clamp(min=1e-12)
        assert (one[name] - four[name]).abs().max() / scale < 1e-5, name


def test_resuming_with_a_different_config_is_refused(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_model_dir, pc_data, tmp_path / "run"), callbacks=[_Crash(3)])
    with pytest.raises(ValueError, match=r"different config \(changed: learning_rate\)"):
        train(_cfg(tiny_model_dir, pc_data, tmp_path / "run", learning_rate=0.5))


def test_logits_only_from_the_first_supervised_position_give_the_same_loss_and_gradients(tokenizer, tmp_path: Path) -> None:
    # Prompts of 3+ tokens in every row: the trainer skips those positions' logits.
    from forgetless.training.run import training_arguments

    rows = [{"prompt": f"Question number {i}:\n", "completion": " word" * (1 + i)} for i in range(4)]
    batch = PadCollator(tokenizer.pad_token_id)(load_examples(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer))
    model = make_model(tokenizer).train()
    cfg = TrainConfig(model="x", data="x", output="x", precision="fp32")
    trainer = ForgetlessTrainer(model=model, args=training_arguments(cfg, tmp_path / "t", save_strategy="no"),
                                objective=build_objective("nll"))
    start = trainer._first_supervised_position(model, batch["labels"])
    assert start == int((batch["labels"][:, 1:] != -100).any(0).nonzero()[0]) and start >= 3
    trimmed = trainer.compute_loss(model, batch, num_items_in_batch=None)
    trimmed.backward()
    trimmed_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss, mask = token_nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                           batch["labels"])
    full = loss.sum() / mask.sum()
    full.backward()
    # The LM head's matmul over fewer rows, and the mean over another shape: the same sums in other orders.
    tokens = int(mask.sum())
    torch.testing.assert_close(trimmed, full, rtol=fp32_reorder_rtol(tiny_llama_terms(batch["input_ids"].shape[1],
                                                                                       tokens)), atol=0)
    for name, param in model.named_parameters():
        torch.testing.assert_close(trimmed_grads[name], param.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_the_data_hash_is_of_the_bytes_trained_on(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    """A data file changed or deleted while training runs neither loses the model nor changes its recorded hash."""
    from forgetless.data import data_hash

    before = data_hash(str(pc_data))

    class DeleteTheData(TrainerCallback):
        def on_step_end(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            pc_data.unlink(missing_ok=True)

    out = train(_cfg(tiny_model_dir, pc_data, tmp_path / "run", max_steps=2), callbacks=[DeleteTheData()])
    assert not pc_data.exists()
    assert json.loads((out / "forgetless.json").read_text())["data"]["sha256"] == before
