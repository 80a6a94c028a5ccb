"""The bf16 path end to end: a base stored in bf16, as real checkpoints ship, through train
(full and LoRA), merge, sweep, budget and a study; every output's dtype is read from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoConfig

from forgetless.cli import main
from forgetless.training.config import TrainConfig
from forgetless.dtypes import float_tensors, resolve_save_dtype, stored_dtype
from forgetless.merging.checkpoint import Checkpoint
from forgetless.study.config import load_study
from forgetless.study.running.runner import run_study
from forgetless.training.run import train
from tests.conftest import TEXT, make_model, write_jsonl


def dtypes_on_disk(path: Path) -> set[torch.dtype]:
    """The float dtypes in the safetensors headers of a model directory."""
    return {dtype for dtype, _ in float_tensors(path).values()}


def weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = Checkpoint(path)
    return {name: checkpoint.read(name) for name in checkpoint.tensors}


def _cfg(model: Path, data: Path, output: Path, **overrides) -> TrainConfig:
    values = dict(model=str(model), data=str(data), output=str(output), max_steps=3, batch_size=4,
                  learning_rate=1e-2, save_steps=100, logging_steps=1, precision="fp32")
    return TrainConfig(**{**values, **overrides})


# --- which dtype an output is written in ---------------------------------------------------------


def test_save_dtype_auto_is_the_dtype_the_base_is_stored_in(tiny_bf16_model_dir, tiny_model_dir, tokenizer,
                                                            tmp_path):
    assert resolve_save_dtype("auto", tiny_bf16_model_dir) == torch.bfloat16
    assert resolve_save_dtype("auto", tiny_model_dir) == torch.float32
    assert resolve_save_dtype("fp16", tiny_bf16_model_dir) == torch.float16
    assert resolve_save_dtype("fp32", tiny_bf16_model_dir) == torch.float32
    # A model built in memory: its parameters' dtype.
    assert resolve_save_dtype("auto", make_model(tokenizer).to(torch.bfloat16)) == torch.bfloat16
    # Without weights on disk (a hub id), the config says it; with neither, fp32 loses nothing.
    config = AutoConfig.from_pretrained(tiny_bf16_model_dir)
    assert resolve_save_dtype("auto", "org/not-a-local-dir", config) == torch.bfloat16
    assert resolve_save_dtype("auto", "org/not-a-local-dir") == torch.float32
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))
    assert stored_dtype(tmp_path) == torch.float16
    # Mostly bf16 with one small fp32 tensor (as some checkpoints keep norms): bf16.
    from safetensors.torch import save_file

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_file({"big": torch.zeros(64, dtype=torch.bfloat16), "norm": torch.zeros(4)}, str(mixed / "model.safetensors"))
    assert stored_dtype(mixed) == torch.bfloat16


def test_full_training_keeps_the_base_dtype_and_rounds_the_fp32_result_once(tiny_bf16_model_dir, pc_data,
                                                                           tmp_path):
    auto = train(_cfg(tiny_bf16_model_dir, pc_data, tmp_path / "auto"))
    fp32 = train(_cfg(tiny_bf16_model_dir, pc_data, tmp_path / "fp32", save_dtype="fp32"))
    assert dtypes_on_disk(auto) == {torch.bfloat16} and dtypes_on_disk(fp32) == {torch.float32}
    assert json.loads((auto / "config.json").read_text())["dtype"] == "bfloat16"
    resolved = json.loads((auto / "forgetless.json").read_text())["resolved"]
    assert resolved["save_dtype"] == "bf16" and resolved["precision"] == "fp32"
    # Same seed, same fp32 training: the bf16 export is the fp32 export rounded once.
    got, full = weights(auto), weights(fp32)
    for name in full:
        assert torch.equal(got[name].view(torch.int16), full[name].to(torch.bfloat16).view(torch.int16)), name
    base = weights(tiny_bf16_model_dir)
    assert any(not torch.equal(base[n], got[n]) for n in base)  # training moved the weights


def test_lora_export_merges_into_the_base_dtype(tiny_bf16_model_dir, pc_data, tmp_path):
    common = dict(lora=True, lora_r=4, lora_alpha=8.0, lora_target_modules="q_proj,v_proj", learning_rate=5e-2)
    auto = train(_cfg(tiny_bf16_model_dir, pc_data, tmp_path / "lora", **common))
    fp32 = train(_cfg(tiny_bf16_model_dir, pc_data, tmp_path / "lora32", save_dtype="fp32", **common))
    assert dtypes_on_disk(auto) == {torch.bfloat16}
    assert json.loads((auto / "forgetless.json").read_text())["resolved"]["save_dtype"] == "bf16"
    got, full, base = weights(auto), weights(fp32), weights(tiny_bf16_model_dir)
    # Weights without adapters come back bit for bit; adapted ones are W + ΔW summed in
    # fp32 and rounded once.
    assert torch.equal(got["model.norm.weight"].view(torch.int16), base["model.norm.weight"].view(torch.int16))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(got[name], base[name])
    assert torch.equal(got[name].view(torch.int16), full[name].to(torch.bfloat16).view(torch.int16))


# --- testbed:NAME@bf16 ------------------------------------------------------------------------


def test_testbed_bf16_spec_derives_a_cached_copy_next_to_the_base(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from forgetless.testbed import variants
    from forgetless.testbed.build import Testbed
    from forgetless.testbed.specs import resolve_spec

    root = tmp_path / "testbed" / "tiny-fake"
    shutil.copytree(tiny_model_dir, root / "base")
    built = []
    monkeypatch.setattr(variants, "build_testbed", lambda preset: built.append(preset) or Testbed(root))

    assert resolve_spec("testbed:tiny") == str(root / "base")
    path = Path(resolve_spec("testbed:tiny@bf16"))
    assert path == root / "base-bf16" and built == ["tiny", "tiny"]
    assert dtypes_on_disk(path) == {torch.bfloat16}
    assert (path / "tokenizer.json").read_text() == (root / "base" / "tokenizer.json").read_text()
    fp32, bf16 = weights(root / "base"), weights(path)
    assert all(torch.equal(bf16[n], fp32[n].to(torch.bfloat16)) for n in fp32)
    assert not list(root.glob(".*tmp*"))  # written atomically: no temporary left behind
    # Cached: a second resolution does not load or write the model again.
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained",
                        lambda *a, **k: pytest.fail("the bf16 copy was rebuilt"))
    assert Path(resolve_spec("testbed:tiny@bf16")) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"testbed:tiny@int8: unknown dtype 'int8' after '@'"):
        resolve_spec("testbed:tiny@int8")


# --- merge, sweep and budget on bf16 checkpoints --------------------------------------------------


@pytest.fixture(scope="module")
def bf16_finetuned(tmp_path_factory, tiny_bf16_model_dir) -> Path:
    """A model fine-tuned from the bf16 base (full weights, bf16 autocast, bf16 export)."""
    root = tmp_path_factory.mktemp("bf16-ft")
    data = write_jsonl(root / "train.jsonl", [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"}
                                              for a in range(4) for b in range(4)])
    return train(_cfg(tiny_bf16_model_dir, data, root / "ft", precision="bf16"))  # mixed precision too


def test_merge_sweep_and_budget_of_a_bf16_base(tiny_bf16_model_dir, bf16_finetuned, tmp_path, capsys):
    base, ft = str(tiny_bf16_model_dir), str(bf16_finetuned)
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in TEXT[:4]])
    domain = write_jsonl(tmp_path / "val.jsonl", [{"prompt": "Sum 1 and 2.\n", "completion": " Answer: 3"}])
    # merge: bf16 in, bf16 out, the hand-checkable midpoint.
    assert main(["merge", "--models", base, ft, "--alpha", "0.5", "--output", str(tmp_path / "mid")]) == 0
    assert dtypes_on_disk(tmp_path / "mid") == {torch.bfloat16}
    name = "model.layers.1.mlp.down_proj.weight"
    a, b, mid = weights(tiny_bf16_model_dir)[name], weights(bf16_finetuned)[name], weights(tmp_path / "mid")[name]
    assert torch.equal(mid, (0.5 * a.float() + 0.5 * b.float()).to(torch.bfloat16))
    # sweep of weights and of the output ensemble: both run, write nothing, agree at the ends.
    curves = {}
    for mode in ("--no-ensemble", "--ensemble"):
        curve = tmp_path / f"curve{mode}.json"
        assert main(["merge", "--sweep", mode, "--models", base, ft, "--alphas", "0", "0.5", "1",
                     "--general", str(general), "--curve", str(curve)]) == 0
        curves[mode] = json.loads(curve.read_text())["curve"]
    for i in (0, 2):
        assert curves["--no-ensemble"][i]["general_nats"] == pytest.approx(curves["--ensemble"][i]["general_nats"],
                                                                           rel=1e-5)
    # budget: the chosen α is written in the base's dtype.
    out = tmp_path / "chosen"
    assert main(["merge", "--models", base, ft, "--alphas", "0.5", "1", "--general", str(general),
                 "--domain", str(domain), "--budget", "1000", "--output", str(out)]) == 0
    assert dtypes_on_disk(out) == {torch.bfloat16}
    chosen = json.loads((out / "forgetless-merge.json").read_text())["params"]["alpha"]
    assert f"alpha={chosen:g} meets the budget" in capsys.readouterr().out


def test_study_train_cells_are_keyed_by_content_and_fp32_needs_no_dtype(tiny_model_dir, tiny_bf16_model_dir, pc_data):
    from forgetless.data import data_hash
    from forgetless.study.running.cells import model_fingerprint
    from forgetless.study.running.runner import train_spec

    probe = _cfg(tiny_model_dir, pc_data, Path("unused"))
    # The base and the data enter by content, never by path, so a moved study keeps its keys (issue 29).
    # fields/template/replace are folded into `data` (forgetless.data.spec), always empty, never in the key;
    # add_bos and chat_template stay out while auto (the base's own conventions, keyed by its fingerprint);
    # an fp32 output (the dtype of every run before save_dtype existed) adds no key.
    left_out = {"model", "data", "save_dtype", "launcher", "accelerate_config", "fields", "template", "replace",
                "add_bos", "chat_template"}
    assert train_spec(probe, str(tiny_model_dir)) == {
        "train": probe.model_dump(exclude={"output", "overwrite", "keep_checkpoints", *left_out}),
        "base": model_fingerprint(tiny_model_dir), "data": data_hash(str(pc_data))}
    assert train_spec(probe.model_copy(update={"save_dtype": "fp32"}), str(tiny_model_dir)).get("save_dtype") is None
    # A bf16 base now writes bf16 models: a new key, so no fp32 model of an older run is reused.
    assert train_spec(probe, str(tiny_bf16_model_dir))["save_dtype"] == "bf16"
    assert train_spec(probe.model_copy(update={"save_dtype": "fp16"}), str(tiny_model_dir))["save_dtype"] == "fp16"


# --- a study on a bf16 base -----------------------------------------------------------------


def test_study_on_a_bf16_base_evaluates_every_kind_of_model(tiny_bf16_model_dir, pc_data, tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", [{"prompt": f"Sum {a} and 1.\n", "answer": str(a + 1)} for a in range(6)])
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": f"The word was with the model {i}."} for i in range(5)])
    peer = write_jsonl(tmp_path / "peer.jsonl", [{"prompt": f"Double {a}.\n", "completion": f" Answer: {2 * a}"}
                                                 for a in range(8)])
    cfg = {
        "name": "bf16 base",
        "output": str(tmp_path / "study"),
        "base_model": str(tiny_bf16_model_dir),
        "data": {"train": str(pc_data), "validation": str(pc_data), "test": str(test), "general": str(general)},
        "training": {"max_steps": 2, "batch_size": 4, "save_steps": 100, "logging_steps": 1, "precision": "fp32"},
        "methods": [{"name": "sft", "learning_rates": [1e-2]},
                    {"name": "lora", "learning_rates": [5e-2],
                     "train": {"lora": True, "lora_r": 4, "lora_alpha": 8.0, "lora_target_modules": "q_proj,v_proj"}}],
        "sweeps": {"interpolation": [0.5], "ensemble": [0.5], "methods": ["sft"]},
        "cocktail": {"peers": [{"name": "doubling", "data": str(peer), "learning_rate": 1e-2}], "num_examples": 2},
        "eval": {"bootstrap": 20},
        "context_free": {"kl_samples": 4, "max_new_tokens": 8},
        "budget": 0.5,
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    root = run_study(load_study(tmp_path / "study.yaml"), print_fn=lambda _: None)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    kinds = sorted(r["kind"] for r in rows)
    # LM-Cocktail: the mix of base and peer alone (alpha 0) and with the fine-tuned model at the grid's 0.5.
    assert kinds == ["base", "cocktail", "cocktail", "ensemble", "interpolation", "trained", "trained"]
    for row in rows:
        assert torch.isfinite(torch.tensor(row["general_nats_per_token"])) and 0 <= row["domain_accuracy"] <= 1
    for row in rows:
        if row["kind"] == "trained":
            assert dtypes_on_disk(Path(row["path"])) == {torch.bfloat16}, row["label"]
    cocktail_models = list((root / "cells").glob("cocktail-*/mix"))  # base and peer mixed, written once
    assert len(cocktail_models) == 1 and dtypes_on_disk(cocktail_models[0]) == {torch.bfloat16}
    # The interpolation at α = 0.5 is a model of its own, between the base and the fine-tuned one.
    base, sft, mid = (next(r for r in rows if r["kind"] == k and r["label"].startswith(p))
                      for k, p in (("base", "base"), ("trained", "sft"), ("interpolation", "sft")))
    assert mid["general_nats_per_token"] not in (base["general_nats_per_token"], sft["general_nats_per_token"])
    assert "Recommendation" in (root / "report.md").read_text()
