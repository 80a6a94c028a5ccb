"""LoRA: trains only adapters, exports merged weights as a plain checkpoint, composes with objectives."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from forgetless.training.config import TrainConfig
from forgetless.data import PadCollator, load_examples
from forgetless.training.lora import apply_lora, resolve_target_modules, save_merged, trainable_parameters
from forgetless.training.run import train
from tests.conftest import make_model


def test_defaults_adapt_every_linear_layer_but_the_head(tokenizer) -> None:
    model = apply_lora(make_model(tokenizer))
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    lora_a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    assert lora_a.shape[0] == 64
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_merged_export_loads_without_peft_and_matches_the_adapted_model(tokenizer, tmp_path: Path) -> None:
    model = apply_lora(make_model(tokenizer), r=4, alpha=8)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 0.1)
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    expected = model(input_ids=ids).logits
    save_merged(model, tmp_path / "m")
    assert not (tmp_path / "m" / "adapter_config.json").exists()
    assert not any("lora" in k for k in load_file(str(tmp_path / "m" / "model.safetensors")))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5)


def test_talr_plus_lora_trains_from_config(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(model=str(tiny_model_dir), data=str(pc_data), output=str(tmp_path / "run"), method="talr",
                      lora=True, lora_r=8, lora_alpha=8, learning_rate=1e-2, max_steps=3, batch_size=4,
                      logging_steps=1, regularizers={"l2sp": {"weight": 1e-3}})
    out = train(cfg)
    meta = json.loads((out / "forgetless.json").read_text())
    assert meta["methods"]["lora"]["r"] == 8
    assert meta["methods"]["trainable_parameters"] < meta["methods"]["total_parameters"]
    logs = [h for h in meta["log_history"] if "loss" in h]
    assert all("talr/tau" in h and "l2sp/distance" in h for h in logs)
    assert logs[-1]["l2sp/distance"] > 0
    base, tuned = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert base.keys() == tuned.keys()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    # Embeddings carry no adapter, so they are untouched.
    assert torch.equal(base["model.embed_tokens.weight"], tuned["model.embed_tokens.weight"])
    batch = PadCollator(0)(load_examples(pc_data, AutoTokenizer.from_pretrained(out))[:2])
    assert AutoModelForCausalLM.from_pretrained(out)(**batch).loss.isfinite()


def test_lora_adapters_do_not_depend_on_what_ran_before(tokenizer, pc_data, tmp_path) -> None:
    """The adapters' random init is seeded by the run: a study worker's earlier cells must not change it."""
    from forgetless.training.run import make_trainer

    def adapters(draws: int) -> dict:
        model = make_model(tokenizer)  # seeds the global RNG itself, so the draws come after it
        torch.rand(draws)  # what earlier work in the same process did to the global RNG
        cfg = TrainConfig(model="x", data=str(pc_data), output="x", lora=True, lora_r=4, precision="fp32")
        trainer = make_trainer(cfg, model, tokenizer, [], tmp_path / f"t{draws}", save_strategy="no")
        return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_A" in n}

    first, second = adapters(1), adapters(1000)
    assert first and all(torch.equal(first[n], second[n]) for n in first)


def test_target_groups_resolve_per_architecture_and_bad_names_fail_clearly(tokenizer) -> None:
    llama = make_model(tokenizer)
    assert resolve_target_modules(llama, "all-linear") == "all-linear"
    assert resolve_target_modules(llama, "attention") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert resolve_target_modules(llama, "mlp, q_proj,attention") == [
        "gate_proj", "up_proj", "down_proj", "q_proj", "k_proj", "v_proj", "o_proj"]  # in order, once each
    with pytest.raises(ValueError, match=r"'qkv_proj' matches no module of this llama model; its linear layers are "
                                         r"named \['down_proj', 'gate_proj', 'k_proj', 'lm_head', 'o_proj', 'q_proj'"):
        resolve_target_modules(llama, "qkv_proj")
    with pytest.raises(ValueError, match="empty"):
        resolve_target_modules(llama, " , ")
    unknown = SimpleNamespace(config=SimpleNamespace(model_type="mamba"), named_modules=llama.named_modules)
    with pytest.raises(ValueError, match=r"the 'mlp' group is not known for model_type 'mamba' .*name the modules"):
        resolve_target_modules(unknown, "mlp")
    assert resolve_target_modules(unknown, "q_proj") == ["q_proj"]  # names work for any architecture
