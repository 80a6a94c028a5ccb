"""Merging inputs stored in different float dtypes: combined in float32, written in the output dtype."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from forgetless.cli import main
from forgetless.dtypes import float_tensors, stored_dtype
from forgetless.merging import merge_checkpoints
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.engine import combine
from forgetless.merging.interpolate import Interpolate
from forgetless.merging.sweep import Interpolator
from tests.conftest import make_model


def weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = Checkpoint(path)
    return {name: checkpoint.read(name) for name in checkpoint.tensors}


def raw(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.mkdir(parents=True)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def fp32_finetuned(tmp_path_factory, tokenizer) -> Path:
    """A tiny model of another seed stored in fp32: what training wrote before save_dtype."""
    path = tmp_path_factory.mktemp("ft-fp32")
    make_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def interpolate(base: Path, ft: Path, alpha: float, out: Path, **kwargs) -> Path:
    return merge_checkpoints([base, ft], Interpolate(alpha).coefficients([base, ft]).values, out,
                             progress=False, **kwargs)


def test_ends_of_a_bf16_base_and_an_fp32_model_are_exact_in_the_output_dtype(
        tiny_bf16_model_dir, fp32_finetuned, tmp_path):
    base, ft = weights(tiny_bf16_model_dir), weights(fp32_finetuned)
    # Default: the first model's dtype (bf16). α = 0 is the base bit for bit; α = 1 is the
    # fine-tuned model rounded to bf16 once, exactly as .to(bfloat16) rounds it.
    for alpha, want in ((0.0, base), (1.0, {n: t.to(torch.bfloat16) for n, t in ft.items()})):
        out = interpolate(tiny_bf16_model_dir, fp32_finetuned, alpha, tmp_path / f"bf16-{alpha}")
        got = weights(out)
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == torch.bfloat16
            assert torch.equal(got[name].view(torch.int16), want[name].view(torch.int16)), name
        assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
        assert json.loads((out / "forgetless-merge.json").read_text())["dtype"] == "bf16"
    # Asked for fp32: α = 0 is the bf16 base widened (exact), α = 1 the fp32 model itself.
    for alpha, want in ((0.0, {n: t.float() for n, t in base.items()}), (1.0, ft)):
        out = interpolate(tiny_bf16_model_dir, fp32_finetuned, alpha, tmp_path / f"fp32-{alpha}", dtype="fp32")
        got = weights(out)
        for name in want:
            assert torch.equal(got[name].view(torch.int32), want[name].view(torch.int32)), name
        assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
        assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.float32


def test_hand_computed_mix_of_bf16_and_fp32_is_rounded_once(tmp_path):
    # bf16 has 8 significant bits: 1 + 2^-8 is not representable, 1 + 2^-7 is.
    a = raw(tmp_path / "a", {"w": torch.tensor([1.0, 2.0, -3.0, 1.0], dtype=torch.bfloat16)})
    b = raw(tmp_path / "b", {"w": torch.tensor([0.5, 0.25, 1.0, 1.0 + 2**-7 + 2**-9], dtype=torch.float32)})
    out = load_file(str(merge_checkpoints([a, b], [0.25, 0.75], tmp_path / "o", progress=False)
                        / "model.safetensors"))["w"]
    assert out.dtype == torch.bfloat16
    # 0.25·1 + 0.75·0.5 = 0.625; 0.25·2 + 0.75·0.25 = 0.6875; 0.25·(−3) + 0.75·1 = 0;
    # 0.25·1 + 0.75·(1 + 2^-7 + 2^-9) = 1 + 0.75·2^-7 + 0.75·2^-9 = 1.0073..., nearest bf16: 1 + 2^-7.
    assert out.tolist() == [0.625, 0.6875, 0.0, 1.0 + 2**-7]
    # The same inputs written in fp16 and fp32, asked for explicitly.
    half = load_file(str(merge_checkpoints([a, b], [0.25, 0.75], tmp_path / "h", progress=False, dtype="fp16")
                         / "model.safetensors"))["w"]
    assert half.dtype == torch.float16 and half[:3].tolist() == [0.625, 0.6875, 0.0]
    full = load_file(str(merge_checkpoints([b, a], [0.75, 0.25], tmp_path / "f", progress=False)
                         / "model.safetensors"))["w"]  # fp32 first: fp32 out
    assert full.dtype == torch.float32
    assert full.tolist() == pytest.approx([0.625, 0.6875, 0.0, 1.0 + 0.75 * 2**-7 + 0.75 * 2**-9], abs=0)


def test_combine_reads_mixed_dtypes_and_returns_the_asked_dtype():
    inputs = [torch.tensor([1.5, -2.0], dtype=torch.bfloat16), torch.tensor([0.5, 4.0], dtype=torch.float16)]
    mixed = combine(lambda k: inputs[k], [0.5, 0.5], torch.float32)
    assert mixed.dtype == torch.float32 and mixed.tolist() == [1.0, 1.0]
    assert combine(lambda k: inputs[k], [0.0, 1.0], torch.bfloat16).dtype == torch.bfloat16
    zeros = combine(lambda k: inputs[k], [0.0, 0.0], torch.float16)
    assert zeros.dtype == torch.float16 and zeros.tolist() == [0.0, 0.0]


def test_in_memory_sweep_of_a_bf16_base_and_an_fp32_model(tiny_bf16_model_dir, fp32_finetuned):
    model = AutoModelForCausalLM.from_pretrained(fp32_finetuned, dtype=torch.float32)
    interpolator = Interpolator(model, tiny_bf16_model_dir, fp32_finetuned)
    base, ft = weights(tiny_bf16_model_dir), weights(fp32_finetuned)
    params = dict(model.named_parameters())
    name = "model.layers.0.mlp.up_proj.weight"
    interpolator.set_alpha(0.0)
    assert torch.equal(params[name], base[name].float())
    interpolator.set_alpha(1.0)
    assert torch.equal(params[name], ft[name])
    interpolator.set_alpha(0.25)
    torch.testing.assert_close(params[name].detach(), 0.75 * base[name].float() + 0.25 * ft[name], rtol=0, atol=1e-6)
    # A bf16 host model gets θ_α computed in float32 and rounded once into it.
    host = AutoModelForCausalLM.from_pretrained(tiny_bf16_model_dir, dtype=torch.bfloat16)
    Interpolator(host, tiny_bf16_model_dir, fp32_finetuned).set_alpha(0.25)
    want = torch.lerp(base[name].float(), ft[name], 0.25).to(torch.bfloat16)
    assert torch.equal(dict(host.named_parameters())[name].view(torch.int16), want.view(torch.int16))


def test_merge_command_dtype_flag(tiny_bf16_model_dir, fp32_finetuned, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["merge", "--models", str(fp32_finetuned), str(tiny_bf16_model_dir), "--alpha", "0.5",
                 "--output", str(out), "--dtype", "bf16"]) == 0
    assert f"merged model written to {out} (bf16;" in capsys.readouterr().out
    assert {d for d, _ in float_tensors(out).values()} == {torch.bfloat16}
    assert stored_dtype(out) == torch.bfloat16
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["input_dtypes"] == {str(fp32_finetuned): "fp32", str(tiny_bf16_model_dir): "bf16"}
