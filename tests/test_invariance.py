"""Batch-layout invariance of every method: 1 × 8 vs 4 × 2 micro-batches, and 2 processes vs 1.

A reweighted loss that is right with one micro-batch and wrong under gradient
accumulation (or data parallelism) is the classic bug; these runs must match.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from forgetless.training.config import TrainConfig
from forgetless.data import load_examples
from forgetless.training.run import make_trainer
from tests.conftest import make_model, write_jsonl

ROOT = Path(__file__).resolve().parents[1]

SPECS: dict[str, dict] = {
    "nll": {"method": "nll"},
    "dft": {"method": "dft"},
    "talr": {"method": "talr"},
    "talr_sample_median": {"method": "talr", "method_params": {"tau": "sample_median", "floor": 0.3}},
    "flow": {"method": "flow"},
    "flow_token": {"method": "flow_token", "method_params": {"normalize": "mean"}},
    "l2sp": {"method": "nll", "regularizers": {"l2sp": {"weight": 1.0, "reduction": "sum"}}},
    "flow+l2sp": {"method": "flow", "regularizers": {"l2sp": {"weight": 1.0}}},
    "talr+lora": {"method": "talr", "lora": True, "lora_r": 4, "lora_alpha": 8},
    "dft+lora+l2sp": {"method": "dft", "lora": True, "lora_r": 4, "regularizers": {"l2sp": {"weight": 1.0}}},
}


@pytest.fixture(scope="module")
def examples(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    # Different lengths, so per-micro-batch means would weight tokens unequally.
    rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + 3 * i) + f" Answer: {i}"} for i in range(8)]
    return load_examples(write_jsonl(tmp_path_factory.mktemp("inv") / "d.jsonl", rows), tokenizer)


# bf16 keeps 8 significant bits: unit roundoff u = 2^-8. Autocast rounds the inputs of
# every matmul to bf16, forward and backward; a layout change regroups those products,
# so gradients of two layouts differ by a few u of the largest gradient entry
# (measured: 3e-3 to 5e-3, about 1.3 u). fp32's u is 2^-24, so 1e-5 has room to spare.
BF16_UNIT_ROUNDOFF = 2.0**-8
BF16_LAYOUT_TOLERANCE = 4 * BF16_UNIT_ROUNDOFF
BF16_SPECS = ("nll", "talr", "flow+l2sp", "talr+lora")


def _grads(tokenizer, examples: list[dict], spec: dict, micro: int, accum: int, tmp_path: Path,
           precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Gradients of one optimizer step, at weights displaced from θ* so L2-SP and LoRA's B are not zero.

    Exactness tests pin ``precision``: ``auto`` may resolve differently on another machine.
    """
    cfg = TrainConfig(model="x", data=str(tmp_path / "d.jsonl"), output="x", batch_size=micro, grad_accum=accum,
                      max_steps=1, learning_rate=1.0, max_grad_norm=0.0, precision=precision, **spec)
    trainer = make_trainer(cfg, make_model(tokenizer), tokenizer, [dict(e) for e in examples],
                           tmp_path / f"g{micro}x{accum}{precision}", save_strategy="no")
    assert trainer.args.bf16 == (precision == "bf16")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    captured: dict[str, torch.Tensor] = {}

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
            captured.update({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    trainer.add_callback(Capture())
    trainer.train()
    return captured


def _max_relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp(min=1e-12)) for k in a)


@pytest.mark.parametrize("name", list(SPECS))
def test_one_micro_batch_equals_gradient_accumulation(tokenizer, examples, tmp_path: Path, name: str) -> None:
    one = _grads(tokenizer, examples, SPECS[name], 8, 1, tmp_path)
    four = _grads(tokenizer, examples, SPECS[name], 2, 4, tmp_path)
    assert _max_relative_difference(one, four) < 1e-5


@pytest.mark.parametrize("name", BF16_SPECS)
def test_bf16_layouts_agree_within_bf16_precision(tokenizer, examples, tmp_path: Path, name: str) -> None:
    one = _grads(tokenizer, examples, SPECS[name], 8, 1, tmp_path, precision="bf16")
    four = _grads(tokenizer, examples, SPECS[name], 2, 4, tmp_path, precision="bf16")
    exact = _grads(tokenizer, examples, SPECS[name], 8, 1, tmp_path, precision="fp32")
    # bf16 autocast was in effect (on CPUs with and without native bf16 alike) ...
    assert _max_relative_difference(exact, one) > 1e-4
    # ... and the layouts still agree to within bf16's precision.
    assert _max_relative_difference(one, four) < BF16_LAYOUT_TOLERANCE


def test_talr_micro_batch_scope_is_per_micro_batch_as_documented(tokenizer, examples, tmp_path: Path) -> None:
    spec = {"method": "talr", "method_params": {"scope": "micro_batch"}}
    one = _grads(tokenizer, examples, spec, 8, 1, tmp_path)
    four = _grads(tokenizer, examples, spec, 2, 4, tmp_path)
    # Each micro-batch has its own τ and normalizer, so the layouts differ.
    assert _max_relative_difference(one, four) > 1e-3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(nproc: int, model_dir: Path, data: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_free_port()}",
               "-m", "tests.distributed.train_methods", str(model_dir), str(data), str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + i % 5) + f" Answer: {i}"} for i in range(48)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    _torchrun(1, tiny_model_dir, data, tmp_path / "one")
    _torchrun(2, tiny_model_dir, data, tmp_path / "two")
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for name in ("talr", "flow"):
        one = load_file(str(tmp_path / "one" / f"{name}.safetensors"))
        two = load_file(str(tmp_path / "two" / f"{name}.safetensors"))
        assert any(not torch.equal(one[k], base[k]) for k in base), f"{name}: training did not move the weights"
        moved = {k: one[k] - base[k] for k in base}
        # Relative to how far training moved each tensor.
        diff = max(float((one[k] - two[k]).abs().max() / moved[k].abs().max().clamp(min=1e-12)) for k in base)
        assert diff < 1e-4, f"{name}: 2 processes vs 1 differ by {diff:.2e} of the update"
