"""bf16 autocast against fp32 on this machine's CPU: step time and final quality on the tiny testbed.

What ``precision: auto`` should pick on a CPU is decided from this run
(``forgetless.training.precision`` keeps the figures). Two parts, both on the
embedded testbed's ``tiny`` base and a task family (default ``gcs_cot``) with the shipped
recipe (``configs/testbed_tiny_sft.yaml``: batch 8, lr 2e-3, cosine):

1. **Step time**: fp32 and bf16 runs interleaved over several rounds of a few
   steps each (machines here are noisy; interleaving shares the noise), median
   step time after warm-up, as a ratio bf16 / fp32.
2. **Quality**: one SFT run per precision for ``--steps`` optimizer steps from the
   same base, then exact match on the task's test split (greedy, fp32 evaluation)
   and held-out general loss in nats/token.

    python bench/precision.py [--steps 300] [--rounds 3] [--timed-steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from train_methods import StepTimer  # bench/ is on sys.path when a bench script runs
from transformers import AutoModelForCausalLM

from forgetless.config import load_yaml
from forgetless.training.config import TrainConfig
from forgetless.evaluation.codelength import code_length
from forgetless.evaluation.domain import domain_accuracy
from forgetless.data.texts import read_texts
from forgetless.machine import machine_stamp
from forgetless.testbed.build import build_testbed
from forgetless.models import load_tokenizer
from forgetless.training.run import train

ROOT = Path(__file__).resolve().parents[1]


def recipe(data: Path, output: Path, precision: str, steps: int) -> TrainConfig:
    """The shipped tiny-testbed SFT recipe, cut to ``steps`` optimizer steps."""
    values = load_yaml(ROOT / "configs" / "testbed_tiny_sft.yaml")
    values.update(data=str(data), output=str(output), precision=precision, max_steps=steps,
                  save_steps=10**6, logging_steps=10**6)
    return TrainConfig(**values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of each quality run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--timed-steps", type=int, default=8, help="steps per timing round")
    parser.add_argument("--warmup", type=int, default=2, help="steps per round left out of the timing")
    parser.add_argument("--task", default="gcs_cot", help="testbed task family to train and score on")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    testbed = build_testbed("tiny")
    data, test = testbed.task(args.task, "train"), testbed.task(args.task, "test")
    heldout = read_texts(testbed.general_heldout)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    quality: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_ in range(args.rounds):
            for precision in ("fp32", "bf16"):
                timer = StepTimer()
                train(recipe(data, work / f"t{round_}-{precision}", precision, args.timed_steps), callbacks=[timer])
                times[precision] += timer.times[args.warmup :]
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            out = train(recipe(data, work / f"q-{precision}", precision, args.steps))
            seconds = time.perf_counter() - start
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            tokenizer = load_tokenizer(str(out))
            quality[precision] = {
                "exact_match": domain_accuracy(model, tokenizer, test, progress=False)["exact_match"],
                "general_nats_per_token": code_length(model, tokenizer, heldout, window=128).nats_per_token,
                "train_seconds": seconds,
            }
    median = {p: statistics.median(t) for p, t in times.items()}
    stamp = machine_stamp()
    print(f"machine: {stamp['summary']}")
    print(f"step time ({args.rounds} rounds x {args.timed_steps - args.warmup} timed steps, batch 8): "
          f"fp32 {median['fp32'] * 1e3:.1f} ms, bf16 {median['bf16'] * 1e3:.1f} ms, "
          f"ratio bf16/fp32 {median['bf16'] / median['fp32']:.2f}")
    for precision, q in quality.items():
        print(f"{precision}: {args.steps} steps in {q['train_seconds']:.0f} s, exact match {q['exact_match']:.1%}, "
              f"held-out general loss {q['general_nats_per_token']:.3f} nats/token")
    if args.json:
        args.json.write_text(json.dumps({"machine": stamp, "median_step_seconds": median, "quality": quality,
                                         "steps": args.steps, "python": platform.python_version()}, indent=2))


if __name__ == "__main__":
    main()
