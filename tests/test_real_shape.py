"""A real-shape smoke test (slow): Qwen2.5-0.5B's architecture, randomly initialized and
stored in bf16, through every command; peak resident memory and time of each are printed.

Run: ``OMP_NUM_THREADS=2 pytest -m slow -s tests/test_real_shape.py`` (needs ~15 GB of
free memory and a few minutes on CPU). Each command runs in its own process, which
reports its own peak resident set (``getrusage(RUSAGE_SELF).ru_maxrss``), so the figures
are per command and include Python, torch and transformers (about 0.5 GB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from forgetless.dtypes import float_tensors
from tests.conftest import TEXT, write_jsonl

pytestmark = pytest.mark.slow

# Qwen/Qwen2.5-0.5B's config.json, less its weights.
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")

# Runs ``forgetless.cli.main`` in a fresh process and writes its exit code and peak RSS. The peak is the process's
# own memory's high-water mark (VmHWM, reset by exec), not ``ru_maxrss``: Linux carries the forking process's peak
# into the child's across exec, and this test's process holds a 0.5B model, so every command read as 1.6 GB or more.
_RUNNER = """
import json, resource, sys
from forgetless.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
try:
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peak_kb = int(status.split()[0])
except (OSError, IndexError, ValueError):  # no procfs: the rusage figure, which may hold the parent's peak
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
json.dump({"code": code, "peak_kb": peak_kb}, open(sys.argv[1], "w"))
sys.exit(code)
"""


def expected_parameters(c: dict) -> int:
    """Parameter count of a Qwen2 decoder from its config (q/k/v have biases; embeddings tied)."""
    h, i, layers, kv = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["num_key_value_heads"]
    kv_dim = kv * h // c["num_attention_heads"]
    attention = (h * h + h) + 2 * (h * kv_dim + kv_dim) + h * h
    return c["vocab_size"] * h + layers * (attention + 3 * h * i + 2 * h) + h


def run(name: str, argv: list[str], tmp_path: Path, figures: dict[str, dict[str, float]]) -> None:
    report = tmp_path / f"{name}.rusage.json"
    start = time.time()
    done = subprocess.run([sys.executable, "-c", _RUNNER, str(report), *argv], capture_output=True, text=True)
    seconds = time.time() - start
    assert done.returncode == 0, f"{name}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    peak = json.loads(report.read_text())["peak_kb"] / 1024**2
    figures[name] = {"peak_gb": peak, "seconds": seconds}
    print(f"  {name:<14} peak RSS {peak:6.2f} GiB   {seconds:6.1f} s", flush=True)


def test_qwen25_05b_shape_through_every_command(tokenizer, tmp_path: Path) -> None:
    base = tmp_path / "base"
    config = Qwen2Config(**QWEN25_05B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == expected_parameters(QWEN25_05B)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)  # a 384-token fixture tokenizer: every id is within the vocabulary
    # Loaded next to a qwen2 config, AutoTokenizer makes it a Qwen2Tokenizer, which adds an
    # unk token <|endoftext|>; saving it that way once keeps the trained models' tokenizers
    # identical to the base's, as with a real Qwen checkpoint (merge compares them).
    AutoTokenizer.from_pretrained(base).save_pretrained(base)
    del model
    assert {d for d, _ in float_tensors(base).values()} == {torch.bfloat16}
    print(f"\nQwen2.5-0.5B shape: {parameters:,} parameters, {(base / 'model.safetensors').stat().st_size / 1e9:.2f} GB "
          f"on disk; commands run with OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}")

    text = write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in TEXT[:24]])
    test = write_jsonl(tmp_path / "test.jsonl", [{"prompt": f"Sum {a} and 1.\n", "answer": str(a + 1)} for a in range(2)])
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in TEXT[:2]])
    common = ["--model", str(base), "--data", str(text), "--format", "text", "--packing", "--max-length", "128",
              "--batch-size", "2", "--max-steps", "2", "--logging-steps", "1"]
    methods = {
        "train nll": [],
        "train flow": ["--method", "flow"],
        "train l2sp": ["--regularizers", '{"l2sp": {"weight": 0.001}}'],
        "train lora": ["--lora"],
    }
    figures: dict[str, dict[str, float]] = {}
    for name, extra in methods.items():
        out = tmp_path / name.replace(" ", "-")
        run(name, ["train", *common, *extra, "--output", str(out)], tmp_path, figures)
        assert {d for d, _ in float_tensors(out).values()} == {torch.bfloat16}, name
        resolved = json.loads((out / "forgetless.json").read_text())["resolved"]
        assert resolved["save_dtype"] == "bf16"
        figures[name]["precision"] = resolved["precision"]

    merged = tmp_path / "merged"
    run("merge", ["merge", "--models", str(base), str(tmp_path / "train-nll"), "--alpha", "0.5",
                  "--output", str(merged)], tmp_path, figures)
    assert {d for d, _ in float_tensors(merged).values()} == {torch.bfloat16}
    run("eval", ["eval", "--model", str(merged), "--base", str(base), "--general", str(general), "--no-cloze",
                 "--domain", str(test), "--output", str(tmp_path / "eval.json"), "--no-progress"], tmp_path, figures)

    study = {
        "name": "real shape", "output": str(tmp_path / "study"), "base_model": str(base),
        "data": {"train": str(text), "validation": str(test), "test": str(test), "general": str(general)},
        "training": {"format": "text", "packing": True, "max_length": 128, "batch_size": 2, "max_steps": 2},
        "methods": [{"name": "sft", "learning_rates": [1e-5]}],
        "sweeps": {"interpolation": [0.5], "ensemble": [0.5]},
        "context_free": {"kl_samples": 0}, "eval": {"bootstrap": 20},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    run("study", ["study", str(tmp_path / "study.yaml")], tmp_path, figures)
    rows = [json.loads(line) for line in (tmp_path / "study" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["kind"] for r in rows) == ["base", "ensemble", "interpolation", "trained"]

    # Full fine-tuning holds fp32 weights, gradients and two Adam moments (16 bytes per
    # parameter); LoRA only the weights and its adapters' state; L2-SP adds a 4-byte anchor.
    assert figures["train lora"]["peak_gb"] < figures["train nll"]["peak_gb"]
    assert figures["train l2sp"]["peak_gb"] > figures["train nll"]["peak_gb"]
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
