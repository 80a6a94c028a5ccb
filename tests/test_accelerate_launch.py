"""`launcher: accelerate`: the shipped configs, FSDP's layer class from the model, DDP over 2 CPU processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from forgetless.config import ConfigError, build_config
from forgetless.training.config import TrainConfig
from forgetless.training.launch import read_accelerate_config, resolve_accelerate_config, transformer_layer_classes
from forgetless.training.run import train
from tests.conftest import write_jsonl
from tests.tolerance import fp32_reorder_rtol, tiny_llama_terms

CONFIGS = Path(__file__).parent.parent / "configs" / "accelerate"


def test_shipped_accelerate_configs() -> None:
    kinds = {p.stem: read_accelerate_config(p)["distributed_type"] for p in CONFIGS.glob("*.yaml")}
    assert kinds == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}
    fsdp = read_accelerate_config(CONFIGS / "fsdp.yaml")["fsdp_config"]
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD" and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert read_accelerate_config(CONFIGS / "deepspeed_zero3.yaml")["deepspeed_config"]["zero_stage"] == 3


def test_fsdp_wraps_the_models_own_block_class(tiny_model_dir: Path) -> None:
    # The fixture model is a Llama: its transformer block is LlamaDecoderLayer.
    assert transformer_layer_classes(str(tiny_model_dir)) == ["LlamaDecoderLayer"]
    resolved = resolve_accelerate_config(CONFIGS / "fsdp.yaml", str(tiny_model_dir))
    assert resolved["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert resolve_accelerate_config(CONFIGS / "ddp.yaml", str(tiny_model_dir)) == read_accelerate_config(
        CONFIGS / "ddp.yaml")


def test_launcher_needs_an_existing_config(tmp_path: Path) -> None:
    values = {"model": "m", "data": "d.jsonl", "output": "out", "launcher": "accelerate"}
    with pytest.raises(ConfigError, match="launcher: accelerate needs accelerate_config"):
        build_config(TrainConfig, values, "test")
    with pytest.raises(ConfigError, match="is not a file"):
        build_config(TrainConfig, {**values, "accelerate_config": str(tmp_path / "none.yaml")}, "test")
    # The default launcher leaves a run's identity (cache keys, resume checks) as it was before launchers.
    plain = build_config(TrainConfig, {k: v for k, v in values.items() if k != "launcher"}, "test")
    assert "launcher" not in plain.identity() and "accelerate_config" not in plain.identity()


def test_ddp_on_two_cpu_processes_matches_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this checks DDP on CPU processes; on GPUs run bench/gpu_check.sh")
    rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + i % 5) + f" Answer: {i}"} for i in range(48)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    # The shipped DDP config with 2 processes: accelerate starts them with torchrun, and on a machine
    # without GPUs each joins a gloo process group on CPU (GPUs: bench/gpu_check.sh). Accelerate's
    # MULTI_CPU type would need MPI for more than one process.
    cpu = {**read_accelerate_config(CONFIGS / "ddp.yaml"), "num_processes": 2}
    (tmp_path / "ddp_cpu.yaml").write_text(yaml.safe_dump(cpu))
    common = {"model": str(tiny_model_dir), "data": str(data), "grad_accum": 2, "max_steps": 3, "learning_rate": 0.5,
              "lr_scheduler": "constant", "group_by_length": False, "max_grad_norm": 1e9, "precision": "fp32",
              "method": "talr", "save_steps": 100, "logging_steps": 1, "keep_checkpoints": False}
    # Per process 4 examples per micro-batch: the same global batch as one process with 8.
    two = train(TrainConfig(**common, batch_size=4, output=str(tmp_path / "two"), launcher="accelerate",
                            accelerate_config=str(tmp_path / "ddp_cpu.yaml")))
    one = train(TrainConfig(**common, batch_size=8, output=str(tmp_path / "one")))
    record = json.loads((two / "forgetless.json").read_text())
    assert record["resolved"]["world_size"] == 2 and record["config"]["launcher"] == "python"
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(load_file(str(two / "model.safetensors"))[k], base[k]) for k in base)
    # Step 1 sees the same weights and the same global batch of 8: its loss and the norm of the
    # gradient averaged over the two ranks must be the single process's (up to float summation order).
    # Later steps are not compared: AdamW's first update is about lr * sign(g), so gradient entries
    # near zero amplify summation-order differences (tests/test_invariance.py uses SGD for that).
    first_two = next(e for e in record["log_history"] if "loss" in e)
    first_one = next(e for e in json.loads((one / "forgetless.json").read_text())["log_history"] if "loss" in e)
    assert first_two["step"] == first_one["step"] == 1
    # Two processes at micro-batch 4 against one at 8: other matmul shapes, and gloo's all-reduce adds the ranks'
    # gradients in its own order. The loss averages the batch's tokens (8 rows of under 64); the squared gradient
    # norm adds each weight's gradient (a sum over the batch's tokens) over every weight.
    loss_terms = tiny_llama_terms(positions=64, summed=8 * 64)
    weights = sum(t.numel() for t in base.values())
    assert first_two["loss"] == pytest.approx(first_one["loss"], rel=fp32_reorder_rtol(loss_terms), abs=0)
    assert first_two["grad_norm"] == pytest.approx(first_one["grad_norm"],
                                                   rel=fp32_reorder_rtol(loss_terms + 8 * 64 + weights), abs=0)
