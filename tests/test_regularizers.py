"""L2-SP: zero at the start, the gradient of the sum form, the mean form, the LoRA form."""

from __future__ import annotations

import pytest
import torch

from forgetless.regularizers import REGULARIZERS, build_regularizer
from forgetless.training.lora import apply_lora
from tests.conftest import make_model


def test_registry_has_l2sp() -> None:
    assert "l2sp" in REGULARIZERS


def test_l2sp_is_zero_at_the_start(tokenizer) -> None:
    model = make_model(tokenizer)
    l2sp = build_regularizer("l2sp", {"weight": 0.5})
    l2sp.attach(model)
    assert l2sp.penalty(model, {}, None).item() == 0.0
    assert l2sp.stats()["distance"] == 0.0


def test_l2sp_sum_gradient_is_two_lambda_times_the_displacement(tokenizer) -> None:
    model = make_model(tokenizer)
    lam = 0.3
    l2sp = build_regularizer("l2sp", {"weight": lam, "reduction": "sum"})
    l2sp.attach(model)
    anchors = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    penalty = l2sp.penalty(model, {}, None)
    penalty.backward()
    squared = sum(((p - anchors[n]) ** 2).sum() for n, p in model.named_parameters())
    assert penalty.item() == pytest.approx(lam * squared.item(), rel=1e-5)
    assert l2sp.stats()["distance"] == pytest.approx(squared.sqrt().item(), rel=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, 2 * lam * (p.detach() - anchors[name]), atol=1e-8), name


def test_l2sp_mean_divides_by_the_parameter_count_and_bf16_anchor_is_close(tokenizer) -> None:
    model = make_model(tokenizer)
    total = build_regularizer("l2sp", {"weight": 1.0, "reduction": "sum"})
    mean = build_regularizer("l2sp", {"weight": 1.0, "reduction": "mean"})
    half = build_regularizer("l2sp", {"weight": 1.0, "reduction": "sum", "anchor_dtype": "bf16"})
    for reg in (total, mean, half):
        reg.attach(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    count = sum(p.numel() for p in model.parameters())
    assert mean.penalty(model, {}, None).item() == pytest.approx(total.penalty(model, {}, None).item() / count, rel=1e-6)
    assert half.penalty(model, {}, None).item() == pytest.approx(total.penalty(model, {}, None).item(), rel=0.2)


def test_l2sp_under_lora_is_the_distance_of_the_merged_weights(tokenizer) -> None:
    model = apply_lora(make_model(tokenizer), r=4, alpha=8)
    l2sp = build_regularizer("l2sp", {"weight": 1.0, "reduction": "sum"})
    l2sp.attach(model)
    assert l2sp.penalty(model, {}, None).item() == 0.0  # B = 0 at the start
    base = {n.replace("base_layer.", ""): p.detach().clone()
            for n, p in model.get_base_model().named_parameters() if "lora" not in n}
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 0.1)
    penalty = l2sp.penalty(model, {}, None)
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    merged = model.merge_and_unload()
    assert base.keys() == dict(merged.named_parameters()).keys()
    squared = sum(((p.detach() - base[n]) ** 2).sum() for n, p in merged.named_parameters())
    assert penalty.item() == pytest.approx(squared.item(), rel=1e-4)


def test_bad_l2sp_parameters() -> None:
    with pytest.raises(ValueError, match="l2sp: reduction"):
        build_regularizer("l2sp", {"reduction": "max"})
    with pytest.raises(ValueError, match="l2sp: weight"):
        build_regularizer("l2sp", {"weight": -1})
    with pytest.raises(ValueError, match="unknown regularizer"):
        build_regularizer("l3", {})


@pytest.mark.parametrize("anchor_dtype", ["fp32", "bf16"])
def test_l2sp_trains_to_the_bit_what_the_two_op_penalty_trained(
    tiny_model_dir, pc_data, tmp_path, monkeypatch: pytest.MonkeyPatch, anchor_dtype: str
) -> None:
    """The fused ``mse_loss`` form gives the losses and weights of ``(θ − θ*).pow(2).sum()``, step for step."""
    import json

    from safetensors.torch import load_file

    from forgetless.training.config import TrainConfig
    from forgetless.regularizers.l2sp import L2SP
    from forgetless.training.run import train

    def run(name: str) -> tuple[list[float], dict[str, torch.Tensor]]:
        l2sp = {"weight": 1.0, "reduction": "sum", "anchor_dtype": anchor_dtype}
        cfg = TrainConfig(model=str(tiny_model_dir), data=str(pc_data), output=str(tmp_path / name), max_steps=3,
                          batch_size=4, learning_rate=1e-2, lr_scheduler="constant", logging_steps=1,
                          regularizers={"l2sp": l2sp})
        out = train(cfg)
        history = json.loads((out / "forgetless.json").read_text())["log_history"]
        return [h["loss"] for h in history if "loss" in h], load_file(out / "model.safetensors")

    fused_losses, fused = run("fused")

    def two_op(self: L2SP) -> torch.Tensor:  # the form before: autograd keeps θ − θ* for the backward pass
        terms = [(p - anchor.to(p.dtype)).pow(2).sum() for p, anchor in self._pairs]
        terms += [m.get_delta_weight(adapter).pow(2).sum() for m, adapter in self._lora]
        return torch.stack(terms).sum()

    monkeypatch.setattr(L2SP, "squared_distance", two_op)
    two_op_losses, reference = run("two-op")
    assert len(fused_losses) == 3 and fused_losses == two_op_losses
    assert fused.keys() == reference.keys() and all(fused[k].equal(reference[k]) for k in fused)
