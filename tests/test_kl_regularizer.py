"""The ``kl`` regularizer: hand-computed KL, zero at θ*, the LoRA path without a copy, a training run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from forgetless.training.config import TrainConfig
from forgetless.data import PadCollator
from forgetless.data.formats import IGNORE
from forgetless.regularizers import build_regularizer
from forgetless.regularizers.kl import KLRegularizer, full_vocab_kl
from forgetless.training.run import train
from tests.conftest import make_model, write_jsonl


def test_full_vocab_kl_by_hand() -> None:
    base = torch.log(torch.tensor([[[0.5, 0.5], [0.2, 0.8]]]))
    model = torch.log(torch.tensor([[[0.9, 0.1], [0.2, 0.8]]]))
    first = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert float(full_vocab_kl(base, model, torch.tensor([[True, True]]))) == pytest.approx(first / 2)
    assert float(full_vocab_kl(base, model, torch.tensor([[True, False]]))) == pytest.approx(first)


def _trainer(model: torch.nn.Module, tokenizer) -> SimpleNamespace:  # noqa: ANN001
    return SimpleNamespace(model=model, processing_class=tokenizer, args=SimpleNamespace(process_index=0))


def _batch(tokenizer) -> dict[str, torch.Tensor]:  # noqa: ANN001
    rows = [{"input_ids": [1, 5, 6, 7, 8], "labels": [IGNORE, 6, 6, 7, 8]}, {"input_ids": [1, 9, 10], "labels": [IGNORE, 9, 10]}]
    return PadCollator(tokenizer.pad_token_id)(rows)


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))


def test_penalty_is_zero_at_the_base_and_the_exact_kl_after(tokenizer) -> None:  # noqa: ANN001
    model = make_model(tokenizer)
    reg = build_regularizer("kl", {"beta": 2.0})
    reg.prepare(_trainer(model, tokenizer))
    batch = _batch(tokenizer)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert float(reg.penalty(model, batch, out).detach()) == pytest.approx(0.0, abs=1e-6)
    base = make_model(tokenizer)  # same seed, same weights
    _perturb(model)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    penalty = reg.penalty(model, batch, out)
    with torch.no_grad():
        ref = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["attention_mask"][:, 1:].bool()  # the padded row's last positions do not count
    expected = 2.0 * full_vocab_kl(ref[:, :-1], out.logits[:, :-1], mask)
    assert float(penalty.detach()) > 0 and float(penalty.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_lora_uses_the_disabled_adapter_not_a_copy(tokenizer, tmp_path: Path) -> None:  # noqa: ANN001
    from forgetless.training.lora import apply_lora

    replay = write_jsonl(tmp_path / "r.jsonl", [{"text": "the word was with the model"}, {"text": "hello there"}])
    base = make_model(tokenizer)
    model = apply_lora(make_model(tokenizer), r=4, alpha=8)
    reg = KLRegularizer(beta=1.0, data=str(replay), batch_size=2)
    reg.prepare(_trainer(model, tokenizer))
    assert reg._base is None and reg.report()["base"] == "peft disabled adapter"
    dummy = _batch(tokenizer)
    assert float(reg.penalty(model, dummy, None).detach()) == pytest.approx(0.0, abs=1e-6)  # B = 0 at init
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    penalty = reg.penalty(model, dummy, None)
    # batch_size = 2 draws both replay rows; the mean over positions does not depend on their order.
    drawn = PadCollator(tokenizer.pad_token_id)([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in reg._examples])
    with torch.no_grad():
        ref = base(input_ids=drawn["input_ids"], attention_mask=drawn["attention_mask"]).logits
        now = model(input_ids=drawn["input_ids"], attention_mask=drawn["attention_mask"]).logits
    expected = full_vocab_kl(ref[:, :-1], now[:, :-1], drawn["attention_mask"][:, 1:].bool())
    assert float(penalty.detach()) > 0 and float(penalty.detach()) == pytest.approx(float(expected), rel=1e-4)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="beta"):
        build_regularizer("kl", {"beta": -1})
    with pytest.raises(ValueError, match="bad parameters"):
        build_regularizer("kl", {"betta": 1})


def test_training_with_the_kl_regularizer(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    replay = write_jsonl(tmp_path / "r.jsonl", [{"text": f"the word was {i}"} for i in range(5)])
    cfg = TrainConfig(model=str(tiny_model_dir), data=str(pc_data), output=str(tmp_path / "run"), learning_rate=1e-2,
                      max_steps=3, batch_size=4, logging_steps=1, lr_scheduler="constant",
                      regularizers={"kl": {"data": str(replay), "beta": 0.5, "batch_size": 2}})
    out = train(cfg)
    meta = json.loads((out / "forgetless.json").read_text())
    kls = [h["kl/kl"] for h in meta["log_history"] if "kl/kl" in h]
    assert len(kls) == 3 and kls[0] == pytest.approx(0.0, abs=1e-6) and kls[-1] > 0
