"""Greedy decoding throughput: forgetless's batched ``greedy_decode`` vs transformers' batched ``model.generate``
(and, unless ``--skip-single``, one-at-a-time ``generate``).

Same model (the testbed *small* architecture: Llama d384, 6 layers, vocab 8192,
random init, or ``--model DIR|real:smollm2-135m``), same prompts (the first
``--prompts`` prompts of the tiny testbed's medcalc_cot test split, encoded as in
training), same budget, measured in one run, in two cases (issue 28):

- none stops: no EOS, every sequence runs the whole budget (generate's best case);
- some stop: the token the model emits most often (after each sequence's first) stands in
  for EOS, so rows finish at different steps; generate keeps finished rows in the batch,
  ``greedy_decode`` drops them.

The two decoders alternate over ``--rounds`` rounds (which goes first alternates too) and the
medians of wall and CPU time are compared. Prints
throughput ratios and whether the generated tokens agree.

    python bench/eval_generate.py [--prompts 32] [--batch-size 32] [--max-new-tokens 48] [--threads 1]
                                  [--model real:smollm2-135m] [--rounds 1] [--skip-single] [--without-cache]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from forgetless.data.formats import encode_prompt
from forgetless.evaluation.generate import _left_pad, greedy_decode
from forgetless.models import load_tokenizer
from forgetless.testbed.build import build_testbed
from forgetless.testbed.specs import resolve_spec


def timed(fn: Callable[[], list[list[int]]]) -> tuple[float, list[list[int]]]:
    """Seconds ``fn`` took, and what it returned."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu_timed(fn: Callable[[], list[list[int]]]) -> tuple[float, float, list[list[int]]]:
    """Wall seconds, this process's CPU seconds (all threads), and what ``fn`` returned. On a machine
    shared with other work the CPU time varies far less than the wall time (it excludes waiting
    for a core); with one torch thread it is the work done."""
    cpu = time.process_time()
    wall, out = timed(fn)
    return wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the two decoders per case")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-single", action="store_true", help="skip one-at-a-time generate (slow on a CPU)")
    parser.add_argument("--without-cache", action="store_true",
                        help="also decode with the KV cache off (what forgetless did under transformers 5.2x until "
                             "it read the cache argument's name from the signature)")
    parser.add_argument("--model", help="a model dir or spec (real:smollm2-135m) instead of the random small model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from eval_loglik import small_model  # same directory

    # The prompts need only the testbed's data (no build); the random model needs its tokenizer (a build).
    model_dir = resolve_spec(args.model) if args.model else None
    tokenizer = load_tokenizer(model_dir or str(build_testbed("tiny").root / "tokenizer"))
    if model_dir:
        model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, dtype=torch.float32).eval()
    else:
        model = small_model(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    task = Path(resolve_spec("testbed:tiny/tasks/medcalc_cot/test.jsonl"))
    lines = task.read_text().splitlines()[: args.prompts]
    prompts = [encode_prompt(tokenizer, json.loads(line)["prompt"]) for line in lines]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    budget = args.max_new_tokens
    model.generation_config.eos_token_id = None  # each call says its own EOS (None: nothing stops)
    print(f"{len(prompts)} prompts, max {budget} new tokens, batch {args.batch_size}, {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    def ours(eos: int | None) -> list[list[int]]:
        return greedy_decode(model, prompts, budget, eos, pad, batch_size=args.batch_size, progress=False)

    def batched(eos: int | None) -> list[list[int]]:
        out_all = []
        with torch.no_grad():
            for b in range(0, len(prompts), args.batch_size):
                ids, mask = _left_pad(prompts[b : b + args.batch_size], pad)
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, do_sample=False,
                                     eos_token_id=eos, pad_token_id=pad)[:, ids.shape[1]:].tolist()
                out_all.extend(o[: o.index(eos)] if eos is not None and eos in o else o for o in out)
        return out_all

    cases: list[tuple[str, int | None]] = [("none stops", None)]
    for case, eos in cases:
        times: dict[str, list[float]] = {"ours": [], "batched": [], "ours_cpu": [], "batched_cpu": []}
        for round_ in range(args.rounds):
            # Alternate which decoder goes first, so neither always follows the other's warm-up.
            if round_ % 2 == 0:
                ours_s, ours_cpu, got = cpu_timed(lambda: ours(eos))
                hf_s, hf_cpu, want = cpu_timed(lambda: batched(eos))
            else:
                hf_s, hf_cpu, want = cpu_timed(lambda: batched(eos))
                ours_s, ours_cpu, got = cpu_timed(lambda: ours(eos))
            times["ours"].append(ours_s)
            times["batched"].append(hf_s)
            times["ours_cpu"].append(ours_cpu)
            times["batched_cpu"].append(hf_cpu)
        ours_s, hf_s = statistics.median(times["ours"]), statistics.median(times["batched"])
        if eos is None:
            # The stand-in EOS of the second case: the token the model emits most often after its first, so
            # rows stop at different steps (a real EOS may never come within a short budget).
            counts = collections.Counter(t for seq in got for t in seq[1:])
            cases.append((f"some stop (EOS = token {counts.most_common(1)[0][0]}, the most frequent after the "
                          "first)", counts.most_common(1)[0][0]))
        cpu_ratio = statistics.median(times["batched_cpu"]) / statistics.median(times["ours_cpu"])
        tokens = sum(len(o) for o in got)
        print(f"\n{case}: {tokens} tokens, {sum(len(o) < budget for o in got)}/{len(got)} sequences stopped "
              f"before the budget (mean length {tokens / len(got):.1f})")
        print(f"  batched model.generate  : {hf_s:7.2f} s  {tokens / hf_s:7.1f} tokens/s")
        print(f"  forgetless greedy_decode: {ours_s:7.2f} s  {tokens / ours_s:7.1f} tokens/s")
        print(f"  ratio vs batched generate: {hf_s / ours_s:.2f}x (rounds: "
              f"{', '.join(f'{h / o:.2f}' for h, o in zip(times['batched'], times['ours']))}); in CPU time "
              f"{cpu_ratio:.2f}x (rounds: "
              f"{', '.join(f'{h / o:.2f}' for h, o in zip(times['batched_cpu'], times['ours_cpu']))}); "
              f"identical tokens: {sum(a == b for a, b in zip(got, want))}/{len(got)}")
        if not args.skip_single:
            single_s, single = timed(lambda: [batched_one(model, p, budget, eos, pad) for p in prompts])
            print(f"  one-at-a-time generate  : {single_s:7.2f} s; ratio {single_s / ours_s:.2f}x; identical tokens: "
                  f"{sum(a == b for a, b in zip(got, single))}/{len(got)}")

    if args.without_cache:
        from forgetless.evaluation import generate as gen_module
        from forgetless.models import Capabilities

        real = gen_module.capabilities
        gen_module.capabilities = lambda m: Capabilities(**{**real(m).__dict__, "cache_arg": None})
        uncached_s, uncached = timed(lambda: ours(None))
        gen_module.capabilities = real
        cached_s, cached = timed(lambda: ours(None))
        print(f"greedy_decode without the KV cache: {uncached_s:7.2f} s, {uncached_s / cached_s:.2f}x slower; "
              f"identical tokens: {sum(a == b for a, b in zip(cached, uncached))}/{len(cached)}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def batched_one(model: torch.nn.Module, prompt: list[int], budget: int, eos: int | None, pad: int) -> list[int]:
    """``model.generate`` on one prompt alone, cut at ``eos``."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget,
                             do_sample=False, eos_token_id=eos, pad_token_id=pad)[0, len(prompt):].tolist()
    return out[: out.index(eos)] if eos is not None and eos in out else out


if __name__ == "__main__":
    main()
