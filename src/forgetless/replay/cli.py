"""``forgetless generate`` (replay data) and ``forgetless kl-estimate`` (the forgetting estimate).

- ``generate --model M --output OUT.jsonl``: context-free samples (``text`` records);
- ``generate --model M --prompts train.jsonl``: contextual replay (prompt/completion);
- ``generate --corpus general.jsonl``: a corpus slice (``text``), no model needed.

Each writes ``OUT.jsonl`` and a sidecar ``OUT.meta.json`` with the settings, atomically.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import forgetless
from forgetless.atomic import write_json, write_jsonl


def _load(model_spec: str, trust_remote_code: bool) -> tuple[Any, Any, str]:
    import torch
    from forgetless.model_loading import check_safetensors, load_causal_lm
    from forgetless.training.run import load_tokenizer, resolve_model

    path = resolve_model(model_spec)
    check_safetensors(path)  # before the tokenizer, whose errors would not name the weights
    tokenizer = load_tokenizer(path, trust_remote_code)
    model = load_causal_lm(path, torch.float32, trust_remote_code)
    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval(), tokenizer, path


def generate_replay_data(output: str, model: str | None = None, prompts: str | None = None,
                         corpus: str | None = None, num_samples: int | None = None, temperature: float = 1.0,
                         top_p: float = 1.0, max_new_tokens: int = 128, seed: int = 0, batch_size: int = 32,
                         prompt: str = "bos", max_chars: int = 512, corpus_order: str = "random",
                         trust_remote_code: bool = False) -> dict[str, Any]:
    """Write replay data to ``output`` and its settings to the sidecar: what ``forgetless generate`` does.

    Context-free samples of ``model`` (no ``prompts``), its completions of ``prompts``
    (contextual), or a slice of ``corpus`` (no model). The defaults are the command's.

    Returns:
        The sidecar's record (kind, source, settings, record count, seconds).

    Raises:
        ValueError: no ``model`` without ``corpus``, or both ``prompts`` and ``corpus``.
    """
    from forgetless.replay.kl_estimate import meta_path_for

    if prompts and corpus:
        raise ValueError("prompts and corpus: give one source of replay data, not both")
    start = time.time()
    meta: dict[str, Any] = {"forgetless_version": forgetless.__version__}
    if corpus:
        from forgetless.replay.corpus import corpus_slice

        count = num_samples or 1000
        records = corpus_slice(corpus, count, max_chars, seed, corpus_order)
        meta.update(kind="corpus", source=corpus, settings={"num_samples": count,
                    "max_chars": max_chars, "seed": seed, "order": corpus_order})
    else:
        if not model:
            raise ValueError("--model is required (except with --corpus)")
        from forgetless.replay.generate import SamplingSettings

        lm, tokenizer, path = _load(model, trust_remote_code)
        if prompts:
            from forgetless.replay.contextual import contextual_completions, read_prompts

            chosen = read_prompts(prompts, num_samples, seed)
            settings = SamplingSettings(num_samples=len(chosen), temperature=temperature, top_p=top_p,
                                        max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size)
            records = contextual_completions(lm, tokenizer, chosen, settings)
            meta.update(kind="contextual", prompts=prompts, dropped_empty=len(chosen) - len(records))
        else:
            from forgetless.replay.generate import context_free_prompt, generate_context_free, sample_record

            settings = SamplingSettings(num_samples=num_samples or 1000, temperature=temperature,
                                        top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                                        batch_size=batch_size, prompt=prompt)
            samples = generate_context_free(lm, tokenizer, settings)
            records = [sample_record(s, tokenizer, settings.prompt) for s in samples]
            prompt_ids = context_free_prompt(tokenizer, settings.prompt)
            meta.update(kind="context_free", prompt_ids=prompt_ids, prompt_text=tokenizer.decode(prompt_ids),
                        generated_tokens=sum(len(s.token_ids) for s in samples),
                        finished_fraction=sum(s.finished for s in samples) / len(samples))
        meta.update(model=path, settings=settings.to_dict())
    meta.update(records=len(records), seconds=time.time() - start)
    write_jsonl(output, records)
    write_json(meta_path_for(output), meta)
    return meta


def cmd_generate(args: argparse.Namespace) -> int:
    """Write replay data: context-free samples, contextual completions, or a corpus slice."""
    meta = generate_replay_data(args.output, args.model, args.prompts, args.corpus, args.num_samples,
                                args.temperature, args.top_p, args.max_new_tokens, args.seed, args.batch_size,
                                args.prompt, args.max_chars, args.corpus_order, args.trust_remote_code)
    print(json.dumps({k: v for k, v in meta.items() if k != "prompt_ids"}, indent=2))
    return 0


def cmd_kl_estimate(args: argparse.Namespace) -> int:
    """Estimate KL(p_base || p_model) on held-out context-free samples of the base (a forgetting measure)."""
    from pathlib import Path

    from forgetless.replay.kl_estimate import kl_estimate, load_samples

    base_spec = args.base
    if base_spec is None:
        recorded = Path(args.model) / "forgetless.json"
        if not recorded.is_file():
            raise ValueError(f"--base is required: {recorded} does not exist to say which base {args.model} was trained from")
        base_spec = json.loads(recorded.read_text())["resolved"]["model"]
    samples = load_samples(args.samples, args.limit)
    model, _, model_path = _load(args.model, args.trust_remote_code)
    base, _, base_path = _load(base_spec, args.trust_remote_code)
    estimate = kl_estimate(model, base, samples, args.batch_size, progress=True)
    result = {"model": model_path, "base": base_path, "samples": args.samples, "kl_estimate": estimate.to_dict()}
    if args.output:
        write_json(args.output, result)
    print(json.dumps(result, indent=2))
    return 0


def add_generate_parser(subparsers: Any) -> None:
    """Register ``generate`` and ``kl-estimate`` on the ``forgetless`` command's subparsers."""
    gen = subparsers.add_parser("generate", help=cmd_generate.__doc__, description=__doc__)
    gen.add_argument("--model", help="model directory, hub id, or testbed:PRESET (not needed with --corpus)")
    gen.add_argument("--output", required=True, help="JSONL to write; settings go to OUTPUT.meta.json")
    source = gen.add_mutually_exclusive_group()
    source.add_argument("--prompts", help="contextual replay: complete the prompts of this prompt/completion file")
    source.add_argument("--corpus", help="corpus replay: slice this general-text file (records with 'text')")
    gen.add_argument("--num-samples", type=int, default=None,
                     help="sequences (context-free, default 1000), prompts (contextual, default all) or pieces (corpus)")
    gen.add_argument("--temperature", type=float, default=1.0, help="1.0 (default) keeps the KL estimate unbiased; 0 is greedy")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus mass kept (1.0: the full distribution)")
    gen.add_argument("--max-new-tokens", type=int, default=128, help="length limit L of a sample, in tokens")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=32, help="sequences sampled in parallel")
    gen.add_argument("--prompt", choices=["bos", "chat"], default="bos",
                     help="context-free prompt: BOS alone, or an empty user turn through the chat template")
    gen.add_argument("--max-chars", type=int, default=512, help="corpus: maximum characters per piece")
    gen.add_argument("--corpus-order", choices=["random", "first"], default="random", help="corpus: which pieces")
    gen.add_argument("--trust-remote-code", action="store_true")
    gen.set_defaults(func=cmd_generate)

    kl = subparsers.add_parser("kl-estimate", help=cmd_kl_estimate.__doc__, description=cmd_kl_estimate.__doc__)
    kl.add_argument("--model", required=True, help="the fine-tuned model")
    kl.add_argument("--base", help="the base model (default: the one recorded in MODEL/forgetless.json)")
    kl.add_argument("--samples", required=True,
                    help="held-out context-free samples of the base (`forgetless generate` output at T=1), not trained on")
    kl.add_argument("--limit", type=int, help="use only the first N samples")
    kl.add_argument("--batch-size", type=int, default=32)
    kl.add_argument("--output", help="also write the result JSON here")
    kl.add_argument("--trust-remote-code", action="store_true")
    kl.set_defaults(func=cmd_kl_estimate)

