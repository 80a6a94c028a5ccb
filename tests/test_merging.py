"""The streaming merge engine and the weight-space coefficient rules."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from forgetless.merging import MergeError, merge_checkpoints
from forgetless.merging.average import Average
from forgetless.merging.checkpoint import Checkpoint
from forgetless.merging.engine import combine
from forgetless.merging.greedy_soup import GreedySoup
from forgetless.merging.interpolate import Interpolate
from forgetless.merging.task_arithmetic import TaskArithmetic
from tests.conftest import make_model


def save(tokenizer, path: Path, seed: int, shard: str | None = None) -> Path:
    """A tiny Llama from ``seed`` with its tokenizer, single-file or sharded."""
    model = make_model(tokenizer, seed)
    if shard:
        model.save_pretrained(path, max_shard_size=shard)
    else:
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory, single-file or sharded."""
    checkpoint = Checkpoint(path)
    return {name: checkpoint.read(name) for name in checkpoint.tensors}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


@pytest.fixture(scope="module")
def trio(tmp_path_factory, tokenizer) -> list[Path]:
    root = tmp_path_factory.mktemp("trio")
    return [save(tokenizer, root / f"m{seed}", seed) for seed in (0, 1, 2)]


def test_interpolate_ends_are_bit_exact(trio, tmp_path):
    base, ft = trio[0], trio[1]
    # A negative zero in the base: 1·(−0.0) + 0·x would give +0.0, skipping zero terms keeps it.
    for alpha, expected in ((0.0, base), (1.0, ft)):
        out = merge_checkpoints([base, ft], Interpolate(alpha).coefficients([base, ft]).values, tmp_path / f"a{alpha}",
                                progress=False)
        got, want = weights(out), weights(expected)
        assert got.keys() == want.keys()
        for name in want:
            assert torch.equal(bits(got[name]), bits(want[name])), name
    assert combine(lambda k: torch.tensor([-0.0, 1.5]), [1.0, 0.0]).signbit()[0]


def test_linear_merge_of_three_equals_hand_computation(trio, tmp_path):
    coefficients = Average([5.0, 3.0, 2.0]).coefficients(trio).values
    assert coefficients == pytest.approx([0.5, 0.3, 0.2])
    out = merge_checkpoints(trio, coefficients, tmp_path / "avg", progress=False)
    a, b, c = (weights(p) for p in trio)
    got = weights(out)
    for name in a:
        torch.testing.assert_close(got[name], 0.5 * a[name] + 0.3 * b[name] + 0.2 * c[name], rtol=1e-6, atol=1e-7)
    record = json.loads((out / "forgetless-merge.json").read_text())
    assert record["coefficients"] == pytest.approx([0.5, 0.3, 0.2])
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (trio[0] / name).read_bytes()


def test_sharded_and_unsharded_inputs_and_outputs_agree(trio, tokenizer, tmp_path):
    sharded = [save(tokenizer, tmp_path / f"s{seed}", seed, shard="30KB") for seed in (0, 1, 2)]
    assert (sharded[0] / "model.safetensors.index.json").is_file()
    plain = merge_checkpoints(trio, [0.2, 0.5, 0.3], tmp_path / "plain", progress=False)
    from_shards = merge_checkpoints(sharded, [0.2, 0.5, 0.3], tmp_path / "from-shards", shard_size="20KB",
                                    progress=False)
    index = json.loads((from_shards / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (from_shards / "model.safetensors").exists()
    a, b = weights(plain), weights(from_shards)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(bits(a[name]), bits(b[name])), name
    # Both load in transformers, and the tied embedding stays tied.
    for path in (plain, from_shards):
        model = AutoModelForCausalLM.from_pretrained(path)
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        torch.testing.assert_close(model.model.embed_tokens.weight, a["model.embed_tokens.weight"], rtol=0, atol=0)


def raw_checkpoint(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.mkdir(parents=True)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def test_integer_tensors_are_copied_from_the_config_source(tmp_path):
    a = raw_checkpoint(tmp_path / "a", {"w": torch.ones(3), "steps": torch.tensor([1, 2, 3])})
    b = raw_checkpoint(tmp_path / "b", {"w": torch.zeros(3), "steps": torch.tensor([7, 8, 9])})
    out = load_file(str(merge_checkpoints([a, b], [0.5, 0.5], tmp_path / "o", config_from=1,
                                          progress=False) / "model.safetensors"))
    assert torch.equal(out["steps"], torch.tensor([7, 8, 9]))
    assert torch.equal(out["w"], torch.full((3,), 0.5))


def test_float_buffers_are_copied_not_averaged(trio, tmp_path):
    # inv_freq is a buffer of the Llama architecture (not a parameter): it must not be averaged.
    dirs = []
    for k, src in enumerate(trio[:2]):
        path = Path(shutil.copytree(src, tmp_path / f"b{k}"))
        tensors = load_file(str(path / "model.safetensors"))
        tensors["model.rotary_emb.inv_freq"] = torch.full((4,), float(k + 1))
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
        dirs.append(path)
    out = load_file(str(merge_checkpoints(dirs, [0.5, 0.5], tmp_path / "o", config_from=1,
                                          progress=False) / "model.safetensors"))
    assert torch.equal(out["model.rotary_emb.inv_freq"], torch.full((4,), 2.0))
    a, b = weights(trio[0]), weights(trio[1])
    torch.testing.assert_close(out["model.norm.weight"], 0.5 * a["model.norm.weight"] + 0.5 * b["model.norm.weight"])


def test_half_precision_is_combined_in_float32_and_kept_in_its_dtype(tmp_path):
    a_w, b_w = torch.randn(64, generator=torch.Generator().manual_seed(0)), torch.randn(64)
    a = raw_checkpoint(tmp_path / "a", {"w": a_w.bfloat16()})
    b = raw_checkpoint(tmp_path / "b", {"w": b_w.bfloat16()})
    out = load_file(str(merge_checkpoints([a, b], [0.3, 0.7], tmp_path / "o", progress=False) / "model.safetensors"))
    assert out["w"].dtype == torch.bfloat16
    assert torch.equal(out["w"], (0.3 * a_w.bfloat16().float() + 0.7 * b_w.bfloat16().float()).bfloat16())


def test_task_arithmetic_is_base_plus_scaled_task_vectors(trio, tmp_path):
    coefficients = TaskArithmetic([0.5, 0.25]).coefficients(trio).values
    assert coefficients == pytest.approx([0.25, 0.5, 0.25])
    got = weights(merge_checkpoints(trio, coefficients, tmp_path / "ta", progress=False))
    base, t1, t2 = (weights(p) for p in trio)
    for name in base:
        want = base[name] + 0.5 * (t1[name] - base[name]) + 0.25 * (t2[name] - base[name])
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-6)


def test_greedy_soup_keeps_only_models_that_help(trio):
    a, b = weights(trio[0]), weights(trio[1])
    target = {n: (a[n] + b[n]) / 2 for n in a}

    def score(model) -> float:  # higher is better: closeness to the midpoint of models 0 and 1
        state = model.state_dict()
        return -sum(float((state[n] - target[n]).pow(2).sum()) for n in target)

    result = GreedySoup(score).coefficients(trio)
    assert result.values == [0.5, 0.5, 0.0]
    assert [t["accepted"] for t in result.info["trials"]] == [True, False]


def test_lora_adapter_input_is_merged_into_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}
    out = merge_checkpoints([tiny_model_dir, tmp_path / "adapter"], [0.0, 1.0], tmp_path / "merged", progress=False)
    got = weights(out)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(got[name], weights(tiny_model_dir)[name])
    torch.testing.assert_close(got[name], expected[name])


# --- refusals: each names what differs, and nothing is written ---------------------------------


def refused(models, coefficients, output: Path, match: str, **kwargs) -> None:
    with pytest.raises(MergeError, match=match):
        merge_checkpoints(models, coefficients, output, progress=False, **kwargs)
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}.tmp-*"))


def test_refuses_different_architectures(trio, tmp_path):
    other = Path(shutil.copytree(trio[1], tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (other / "config.json").write_text(json.dumps(config))
    refused([trio[0], other], [0.5, 0.5], tmp_path / "out", "architectures differ: .*llama.*mistral")


def test_refuses_different_shapes_naming_the_tensor(tmp_path):
    a = raw_checkpoint(tmp_path / "a", {"layer.weight": torch.ones(2, 3)})
    b = raw_checkpoint(tmp_path / "b", {"layer.weight": torch.ones(3, 2)})
    refused([a, b], [0.5, 0.5], tmp_path / "out", r"tensor layer.weight has shape \[2, 3\] in .* but \[3, 2\]")


def test_refuses_an_integer_tensor_whose_dtype_differs_naming_it(tmp_path):
    # Float tensors of different dtypes are combined (tests/test_merging_dtypes.py); a tensor
    # that is an integer in one input and a float in another cannot be.
    a = raw_checkpoint(tmp_path / "a", {"w": torch.ones(2), "steps": torch.tensor([1, 2])})
    b = raw_checkpoint(tmp_path / "b", {"w": torch.ones(2), "steps": torch.tensor([1.0, 2.0])})
    refused([a, b], [0.5, 0.5], tmp_path / "out", r"tensor steps has dtype I64 in .*a but F32 in .*b; only float")


def test_refuses_missing_tensor(tmp_path):
    a = raw_checkpoint(tmp_path / "a", {"x": torch.ones(2), "lm_head.weight": torch.ones(2)})
    b = raw_checkpoint(tmp_path / "b", {"x": torch.ones(2)})
    refused([a, b], [0.5, 0.5], tmp_path / "out", "tensor lm_head.weight is in .*a but not in .*b")


def test_refuses_different_tokenizers_naming_the_token(trio, tmp_path):
    other = Path(shutil.copytree(trio[1], tmp_path / "other"))
    data = json.loads((other / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    token = next(t for t, i in vocab.items() if i == 300)
    vocab["zzqq"] = vocab.pop(token)
    (other / "tokenizer.json").write_text(json.dumps(data))
    refused([trio[0], other], [0.5, 0.5], tmp_path / "out", f"tokenizers differ at token id 300: '{token}'.*'zzqq'")


def test_refuses_missing_shard(tokenizer, trio, tmp_path):
    sharded = save(tokenizer, tmp_path / "sharded", 1, shard="30KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    lost = sorted(set(index["weight_map"].values()))[-1]
    (sharded / lost).unlink()
    refused([trio[0], sharded], [0.5, 0.5], tmp_path / "out", f"shard {lost} named in model.safetensors.index.json is missing")


def test_refuses_pickled_weights(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"not loaded")
    raw = raw_checkpoint(tmp_path / "a", {"x": torch.ones(2)})
    refused([raw, tmp_path / "bin"], [0.5, 0.5], tmp_path / "out", r"holds only pickled weights \(pytorch_model.bin\)")


@pytest.mark.parametrize("rule, models, match", [
    (Interpolate(1.5), 2, r"alpha=1.5: expected a number in \[0, 1\]"),
    (Interpolate(0.5), 3, "interpolate takes exactly 2 models"),
    (Average([1.0, -1.0]), 2, "weight -1.0: weights of an average must be finite and non-negative"),
    (Average([0.0, 0.0]), 2, "weights sum to 0"),
    (Average([1.0]), 2, "1 weights for 2 models"),
    (TaskArithmetic([0.5, 0.5, 0.5]), 3, "3 lambdas for 2 task models"),
    (TaskArithmetic([0.0]), 2, "all lambdas are 0"),
])
def test_refuses_coefficients_that_make_no_sense(rule, models, match):
    with pytest.raises(MergeError, match=match):
        rule.coefficients([Path(f"m{i}") for i in range(models)])


def test_engine_refuses_bad_coefficients(trio, tmp_path):
    refused(trio, [0.5, 0.5], tmp_path / "out", "2 coefficients for 3 models")
    refused(trio[:2], [math.nan, 1.0], tmp_path / "out", "coefficient nan is not a finite number")
    refused(trio[:2], [0.0, 0.0], tmp_path / "out", "all coefficients are zero")


def test_interrupted_merge_leaves_no_output(trio, tmp_path, monkeypatch):
    import forgetless.merging.engine as engine

    calls = {"n": 0}
    real = engine.combine

    def interrupt(read, coefficients, dtype=None, scratch=None, out=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(read, coefficients, dtype, scratch, out)

    monkeypatch.setattr(engine, "combine", interrupt)
    with pytest.raises(KeyboardInterrupt):
        merge_checkpoints(trio, [0.2, 0.3, 0.5], tmp_path / "out", progress=False)
    assert calls["n"] == 3
    assert list(tmp_path.iterdir()) == []
