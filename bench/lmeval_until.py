"""Benchmark: lm-eval generation tasks with stop strings, through forgetless's adapter (``ForgetlessLM``) and
lm-eval's own ``HFLM``, on the same model and requests, in one run.

The requests are short-answer ones as lm-eval's ``nq_open`` and ``triviaqa`` build them (``until: ["\\n", ".",
","]``): the probes' prompts (``The capital of France is``, ``7 * 8 =``; ``forgetless.testbed.probes``), the
first ``--prompts`` of them, ``--max-gen-toks`` tokens at most. Three decoders alternate over ``--rounds``:

- ``forgetless``: ``ForgetlessLM.generate_until`` (a row leaves the batch once its text holds a stop string);
- ``forgetless, no stop``: the same, decoding every row to the budget before cutting (what it did before);
- ``HFLM``: lm-eval's ``generate_until`` (transformers' ``generate``; a batch stops once every row holds one).

Prints median wall times, the ratios and whether the completions agree (forgetless with and without the stop
rule must agree exactly; HFLM batches with left padding, where a rare greedy tie may differ).

    python bench/lmeval_until.py [--model real:smollm2-135m] [--prompts 64] [--max-gen-toks 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch

import forgetless.evaluation.lmeval as lmeval_module
from forgetless.evaluation.lmeval import ForgetlessLM
from forgetless.models import load_model
from forgetless.testbed.probes import PROBES
from forgetless.testbed.specs import resolve_spec

UNTIL = ["\n", ".", ","]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="real:smollm2-135m", help="a model dir or spec")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-gen-toks", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    model, tokenizer, _ = load_model(resolve_spec(args.model))
    model.eval()
    prompts = [row["prompt"] for name in PROBES for row in PROBES[name][0]()][: args.prompts]
    requests = [SimpleNamespace(args=(p, {"until": UNTIL, "max_gen_toks": args.max_gen_toks, "do_sample": False}),
                                request_type="generate_until") for p in prompts]
    ours = ForgetlessLM(model, tokenizer, batch_size=args.batch_size, progress=False)
    hf = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, device="cpu")

    def no_stop() -> list[str]:
        real = lmeval_module.stop_strings
        lmeval_module.stop_strings = lambda tokenizer, until: None
        try:
            return ours.generate_until(requests, disable_tqdm=True)
        finally:
            lmeval_module.stop_strings = real

    runs: dict[str, Callable[[], list[str]]] = {
        "forgetless": lambda: ours.generate_until(requests, disable_tqdm=True),
        "forgetless, no stop": no_stop,
        "HFLM": lambda: hf.generate_until(requests, disable_tqdm=True),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, list[str]] = {}
    print(f"{args.model}: {len(prompts)} requests, until {UNTIL!r}, max_gen_toks {args.max_gen_toks}, batch "
          f"{args.batch_size}, {args.threads} thread(s)")
    for r in range(args.rounds):
        names = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in names:
            start = time.perf_counter()
            outputs[name] = runs[name]()
            times[name].append(time.perf_counter() - start)
            print(f"  round {r + 1} {name:<20} {times[name][-1]:7.2f} s", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    print("\nmedians: " + ", ".join(f"{name} {t:.2f} s" for name, t in median.items()))
    print(f"forgetless / no stop: {median['forgetless'] / median['forgetless, no stop']:.3f}x the time; "
          f"forgetless / HFLM: {median['forgetless'] / median['HFLM']:.3f}x")
    same = sum(a == b for a, b in zip(outputs["forgetless"], outputs["forgetless, no stop"]))
    agree = sum(a == b for a, b in zip(outputs["forgetless"], outputs["HFLM"]))
    print(f"completions: {same}/{len(prompts)} identical with and without the stop rule; {agree}/{len(prompts)} "
          f"identical to HFLM's; e.g. {prompts[0]!r} -> {outputs['forgetless'][0]!r}")


if __name__ == "__main__":
    main()
