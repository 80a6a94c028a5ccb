"""A study's replay cell outside its training steps: with the replay KL log (before) and without it (the study now).

    python bench/replay_kl_log.py                     # real:smollm2-135m, configs/real.yaml's replay settings
    python bench/replay_kl_log.py --model testbed:tiny --rounds 2

What a context-free replay cell of ``configs/real.yaml`` does besides its steps: load the base and the data,
then (before) draw ``kl_eval_samples`` = 64 held-out samples of up to 128 tokens from the base and score them
under it, score them under the model at step 50 and at the end (step 60), and save. A study measures that
estimate in every evaluation cell on its own held-out samples, so its cells now train without the log
(``forgetless.study.running.replay_cells.without_kl_log``); the weights are the same (tests/test_study_kl_log.py).

Here each run trains ``--steps`` = 2 steps at batch 8 with ``kl_eval_steps`` = 1, so the log scores twice in the
loop, as the study's 60 steps do, and the time outside the steps (the run's wall time less its steps, each timed
from ``on_step_begin`` to ``on_step_end`` before the log's own ``on_step_end``) holds exactly that work. The
runs alternate, before, after, before, after (``--rounds``), in this one process; the ratio is of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from forgetless.training.config import TrainConfig
from forgetless.machine import machine_stamp
from forgetless.testbed.specs import resolve_spec
from forgetless.training.run import train

WORDS = ("the antidote for the agent named among the findings is given after the drug class is known and the "
         "patient is watched for a day while the ward keeps its notes").split()


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (registered before the KL log's callback, so its scoring is left out)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start = 0.0

    def on_step_begin(self, *a: Any, **k: Any) -> None:
        self.start = time.perf_counter()

    def on_step_end(self, *a: Any, **k: Any) -> None:
        self.times.append(time.perf_counter() - self.start)


def write_files(root: Path, rows: int) -> tuple[Path, Path]:
    """Prompt/completion rows of about 40 tokens (the task's size) and text rows to replay."""
    data, replay = root / "train.jsonl", root / "replay.jsonl"
    with data.open("w") as out:
        for i in range(rows):
            words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(24))
            out.write(json.dumps({"prompt": f"Case {i}:\n", "completion": f" {words}.\nAnswer: {i % 16}"}) + "\n")
    with replay.open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"text": " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(30))}) + "\n")
    return data, replay


def outside_steps(cfg: TrainConfig) -> tuple[float, float]:
    """``(seconds of the run outside its steps, seconds in its steps)`` of one ``train`` call."""
    timer = StepTimer()
    start = time.perf_counter()
    train(cfg, callbacks=[timer])
    wall = time.perf_counter() - start
    return wall - sum(timer.times), sum(timer.times)


def main() -> None:
    """Alternate the two runs and print the ratio of the time outside the steps."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="real:smollm2-135m")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a study worker's: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = resolve_spec(args.model)
    print(f"model: {args.model}; machine: {machine_stamp()['summary']}; load average before: {os.getloadavg()}")
    outside: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        data, replay = write_files(Path(tmp), rows=32)
        # configs/real.yaml's cf-replay method (its KL log at the defaults), at batch 8 and max_length 64.
        before = TrainConfig(model=model, data=str(data), output=str(Path(tmp) / "run"), max_steps=args.steps,
                             batch_size=8, max_length=64, learning_rate=2e-4, save_steps=10_000, overwrite=True,
                             replay=json.dumps({"data": str(replay), "ratio": 0.5, "kl_eval_steps": 1}))
        # kl_eval_steps = 1: two in-loop scorings, as at steps 50 and 60 of the study's 60 steps. After: what
        # without_kl_log makes of the study's method (kl_eval_* left at their defaults), kl_eval_samples = 0.
        after = before.model_copy(update={"replay": before.replay.model_copy(update={"kl_eval_samples": 0})})
        for round_ in range(args.rounds):
            for name, cfg in (("before", before), ("after", after)):
                seconds, steps = outside_steps(cfg)
                outside[name].append(seconds)
                print(f"  round {round_} {name}: {seconds:.1f} s outside the steps ({steps:.1f} s in "
                      f"{args.steps} steps), load {os.getloadavg()[0]:.1f}", flush=True)
    a, b = statistics.median(outside["before"]), statistics.median(outside["after"])
    print(f"outside the steps: before (KL log on) {a:.1f} s, after (the study's replay cells) {b:.1f} s; "
          f"ratio {a / b:.1f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
