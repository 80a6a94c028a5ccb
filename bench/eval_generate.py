"""Greedy decoding throughput: forgetless's batched ``greedy_decode`` vs one-at-a-time ``model.generate``.

Same model (the testbed *small* architecture: Llama d384, 6 layers, vocab 8192,
random init, or ``--model DIR`` for a trained one), same prompts (the first
``--prompts`` prompts of the tiny testbed's medcalc_cot test split, encoded as in
training), same budget, measured in one run. Also times ``model.generate`` on the
same batch (left-padded, batch ``--batch-size``), which keeps finished sequences in
the batch. Prints throughput ratios and whether the generated tokens agree.

    python bench/eval_generate.py [--prompts 32] [--batch-size 32] [--max-new-tokens 48] [--threads 1]
                                  [--model real:smollm2-135m] [--without-cache]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from forgetless.data.formats import encode_prompt
from forgetless.evaluation.generate import _left_pad, greedy_decode
from forgetless.models import load_tokenizer
from forgetless.testbed.build import build_testbed
from forgetless.testbed.specs import resolve_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
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
    eos, pad, budget = tokenizer.eos_token_id, tokenizer.pad_token_id, args.max_new_tokens
    print(f"{len(prompts)} prompts, max {budget} new tokens, batch {args.batch_size}, {torch.get_num_threads()} threads")

    start = time.perf_counter()
    ours = greedy_decode(model, prompts, budget, eos, pad, batch_size=args.batch_size, progress=False)
    ours_s = time.perf_counter() - start

    start = time.perf_counter()
    single = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget,
                                 do_sample=False, eos_token_id=eos, pad_token_id=pad)[0, len(p):].tolist()
            single.append(out[: out.index(eos)] if eos in out else out)
    single_s = time.perf_counter() - start

    start = time.perf_counter()
    batched_hf = []
    with torch.no_grad():
        for b in range(0, len(prompts), args.batch_size):
            chunk = prompts[b : b + args.batch_size]
            ids, mask = _left_pad(chunk, pad)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=budget, do_sample=False,
                                 eos_token_id=eos, pad_token_id=pad)[:, ids.shape[1]:].tolist()
            batched_hf.extend(o[: o.index(eos)] if eos in o else o for o in out)
    batched_hf_s = time.perf_counter() - start

    if args.without_cache:
        from forgetless.evaluation import generate as gen_module
        from forgetless.models import Capabilities

        real = gen_module.capabilities
        gen_module.capabilities = lambda m: Capabilities(**{**real(m).__dict__, "cache_arg": None})
        start = time.perf_counter()
        uncached = greedy_decode(model, prompts, budget, eos, pad, batch_size=args.batch_size, progress=False)
        uncached_s = time.perf_counter() - start
        gen_module.capabilities = real
        print(f"greedy_decode without the KV cache: {uncached_s:7.2f} s, {uncached_s / ours_s:.2f}x slower; "
              f"identical tokens: {sum(a == b for a, b in zip(ours, uncached))}/{len(ours)}")

    tokens = sum(len(o) for o in ours)
    print(f"one-at-a-time model.generate : {single_s:7.2f} s  {tokens / single_s:7.1f} tokens/s")
    print(f"batched model.generate       : {batched_hf_s:7.2f} s  {tokens / batched_hf_s:7.1f} tokens/s")
    print(f"forgetless greedy_decode     : {ours_s:7.2f} s  {tokens / ours_s:7.1f} tokens/s")
    print(f"ratio vs one-at-a-time generate: {single_s / ours_s:.2f}x; vs batched generate: {batched_hf_s / ours_s:.2f}x")
    print(f"identical tokens: {sum(o == s for o, s in zip(ours, single))}/{len(ours)} vs one-at-a-time, "
          f"{sum(o == s for o, s in zip(ours, batched_hf))}/{len(ours)} vs batched generate; "
          f"{sum(len(o) < budget for o in ours)} sequences stopped at EOS before the budget")


if __name__ == "__main__":
    main()
