"""Kill ``forgetless train`` and ``forgetless merge`` with SIGKILL at random moments, including
inside checkpoint writes and the final write of the output, rerun each time, and require the
result of an uninterrupted run bit for bit (fp32) (issue 18).

The suite is ``slow`` (a few minutes: every attempt is a fresh process). The last test, fast,
checks the one piece of cleanup a kill needs outside the resume logic: a dead writer's
temporary directory is removed by the next write.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

import forgetless
from forgetless.atomic import atomic_dir
from tests.conftest import make_model, write_jsonl

SRC = str(Path(forgetless.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "forgetless.cli", *args]


def _run_and_kill(args: list[str], trigger: Callable[[], bool] | None, delay: float | None,
                  timeout: float = 300) -> int:
    """Run ``args``; SIGKILL it once ``trigger()`` is true or ``delay`` seconds have passed.

    Returns the exit status (``-9`` when the kill landed while it ran).
    """
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    while process.poll() is None:
        elapsed = time.monotonic() - start
        if (delay is not None and elapsed >= delay) or (trigger is not None and trigger()):
            process.send_signal(signal.SIGKILL)
            break
        assert elapsed < timeout, "the command hung"
        time.sleep(0.001)
    process.wait()
    return process.returncode


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    assert files, f"{directory}: no weights"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _partial_checkpoint(checkpoints: Path, file: str, step: int) -> Callable[[], bool]:
    """True while ``checkpoint-STEP`` has ``file`` but not yet ``trainer_state.json`` (written last).

    A save lasts milliseconds, and a poll can miss it on a busy machine: then the trigger
    fires at the next checkpoint directory seen, so that a miss still kills (in the steps
    after the save, or in the next save) rather than letting the run finish.
    """
    checkpoint = checkpoints / f"checkpoint-{step}"
    later = checkpoints / f"checkpoint-{step + 2}"

    def trigger() -> bool:
        if (checkpoint / file).exists() and not (checkpoint / "trainer_state.json").exists():
            return True
        return later.exists() or (checkpoint / "trainer_state.json").exists()
    return trigger


def _last_complete(checkpoints: Path) -> int:
    steps = [int(c.name.split("-")[1]) for c in checkpoints.glob("checkpoint-*") if (c / "trainer_state.json").is_file()]
    return max(steps, default=0)


def _final_write(output: Path, inside: str | None = None) -> Callable[[], bool]:
    """True once the output's temporary sibling exists (and holds a file matching ``inside``, when given)."""
    def trigger() -> bool:
        return any(inside is None or any(tmp.glob(inside)) for tmp in output.parent.glob(f".{output.name}.tmp-*"))
    return trigger


@pytest.mark.slow
def test_train_survives_kills_at_random_moments(tokenizer, tmp_path: Path) -> None:
    # 256 wide (2.5M parameters, a 10 MB checkpoint, 20 MB of optimizer state), so that a
    # checkpoint write lasts long enough to be caught in the middle.
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    base = tmp_path / "base"
    LlamaForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    rows = [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"} for a in range(4) for b in range(4)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)

    def train(output: Path) -> list[str]:
        return _command("train", "--model", str(base), "--data", str(data), "--output", str(output),
                        "--precision", "fp32", "--max-steps", "40", "--save-steps", "2", "--batch-size", "4",
                        "--learning-rate", "1e-2", "--lr-scheduler", "constant", "--logging-steps", "1")

    start = time.monotonic()
    assert subprocess.run(train(tmp_path / "straight"), env=ENV, capture_output=True).returncode == 0
    duration = time.monotonic() - start
    reference = _weights(tmp_path / "straight")

    output = tmp_path / "killed"
    checkpoints = tmp_path / "killed.work" / "checkpoints"
    # Inside the save of a checkpoint a few steps ahead (the next one would make no progress).
    during_training = {
        "checkpoint: weights written, nothing else": "model.safetensors",
        "checkpoint: optimizer written, no trainer_state.json": "optimizer.pt",
        "checkpoint: scheduler written": "scheduler.pt",
    }
    # Then the final write of the output (after the last steps), once per stage.
    final_write: dict[str, Callable[[], bool]] = {
        "final write: temporary directory made": _final_write(output),
        "final write: weights written": _final_write(output, "model.safetensors"),
        "final write: forgetless.json written": _final_write(output, "forgetless.json"),
    }
    rng = random.Random(18)
    kills: dict[str, int] = {}
    attempts = 0

    def attempt(name: str, trigger: Callable[[], bool] | None, delay: float | None) -> None:
        nonlocal attempts
        attempts += 1
        code = _run_and_kill(train(output), trigger, delay)
        if code == -signal.SIGKILL:
            kills[name] = kills.get(name, 0) + 1
        else:
            assert code == 0, f"a rerun after a kill failed with exit {code}"

    while sum(kills.values()) < 16 and (done := _last_complete(checkpoints)) < 38 and not output.exists():
        name = rng.choice([*during_training, "random moment", "random moment"])
        if name == "random moment":  # anywhere, start-up included
            attempt(name, None, rng.uniform(0.0, duration))
        else:
            step = rng.choice(range(done + 4, min(done + 8, 40) + 1, 2))  # a little ahead: many kills per run
            attempt(name, _partial_checkpoint(checkpoints, during_training[name], step), None)
    for name, trigger in final_write.items():  # the rest of the training, then a kill in the final write
        if not output.exists():
            attempt(name, trigger, None)
    if not output.exists():
        attempt("none", None, None)
    assert output.exists()
    print(f"\ntrain: {sum(kills.values())} kills survived in {attempts} attempts: {kills}")
    assert sum(kills.values()) >= 10 and sum(kills.get(name, 0) for name in final_write) >= 2
    assert _same(_weights(output), reference)
    assert not list(tmp_path.glob(".killed.tmp-*")), "a killed final write was not cleaned up"


@pytest.mark.slow
def test_merge_output_is_complete_and_identical_or_absent(tokenizer, tmp_path: Path) -> None:
    models = []
    for seed in (0, 1):
        path = tmp_path / f"m{seed}"
        make_model(tokenizer, seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        models.append(str(path))

    def merge(output: Path) -> list[str]:  # small shards: the write takes several files
        return _command("merge", "--models", *models, "--rule", "interpolate", "--alpha", "0.3",
                        "--shard-size", "20KB", "--output", str(output))

    start = time.monotonic()
    assert subprocess.run(merge(tmp_path / "straight"), env=ENV, capture_output=True).returncode == 0
    duration = time.monotonic() - start
    reference = _weights(tmp_path / "straight")
    files = sorted(p.name for p in (tmp_path / "straight").iterdir())

    output = tmp_path / "merged"
    triggers = {
        "temporary directory made": _final_write(output),
        "first shard written": _final_write(output, "model-00001-of-*.safetensors"),
        "second shard written": _final_write(output, "model-00002-of-*.safetensors"),
        "index written": _final_write(output, "model.safetensors.index.json"),
        "record written": _final_write(output, "forgetless-merge.json"),
    }
    rng = random.Random(18)
    kills: dict[str, int] = {}
    for attempt in range(30):
        name = rng.choice([*triggers, "random moment", "random moment"])
        trigger, delay = (None, rng.uniform(0.0, duration)) if name == "random moment" else (triggers[name], None)
        code = _run_and_kill(merge(output), trigger, delay)
        if output.exists():  # complete and identical, or absent: never half-written
            assert sorted(p.name for p in output.iterdir()) == files and _same(_weights(output), reference)
        if code == -signal.SIGKILL:
            kills[name] = kills.get(name, 0) + 1
            if output.exists():
                shutil.rmtree(output)  # killed after the rename: start over, to kill again
        else:
            assert code == 0 and output.exists()
            shutil.rmtree(output)
    print(f"\nmerge: {sum(kills.values())} kills, outputs always complete or absent: {kills}")
    assert sum(kills.values()) >= 15
    assert subprocess.run(merge(output), env=ENV, capture_output=True).returncode == 0
    assert _same(_weights(output), reference)
    assert not list(tmp_path.glob(".merged.tmp-*")), "a killed write was not cleaned up"


def test_a_dead_writers_temporary_directory_is_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "half-written").write_text("x")
    live = tmp_path / f".out.tmp-{os.getppid()}"  # a running process's write is left alone
    live.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "done").write_text("y")
    assert not stale.exists() and live.exists() and (tmp_path / "out" / "done").is_file()
