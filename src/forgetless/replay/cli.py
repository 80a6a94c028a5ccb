"""``forgetless generate`` (replay data) and ``forgetless kl-estimate`` (the forgetting estimate).

- ``generate --model M --output OUT.jsonl``: context-free samples (``text`` records);
- ``generate --model M --prompts train.jsonl``: contextual replay (prompt/completion);
- ``generate --corpus general.jsonl``: a corpus slice (``text``), no model needed.

Each writes ``OUT.jsonl`` and a sidecar ``OUT.meta.json`` with the settings, atomically.
"""

from __future__ import annotations

import json
import time
from typing import Any

import forgetless
from forgetless.atomic import write_json, write_jsonl
from forgetless.replay.config import GenerateArgs, KLEstimateArgs
from forgetless.schema_flags import add_schema_flags, schema_command


def _load(model_spec: str, trust_remote_code: bool) -> tuple[Any, Any, str]:
    """The model (fp32, on the GPU when there is one), its tokenizer and its path."""
    import torch  # imported here: `forgetless --help` should not pay for torch

    from forgetless.models import load_model

    model, tokenizer, path = load_model(model_spec, trust_remote_code)
    return (model.cuda() if torch.cuda.is_available() else model), tokenizer, path


def cmd_generate(args: GenerateArgs) -> int:
    """Write replay data: context-free samples, contextual completions, or a corpus slice."""
    from forgetless.replay.kl_estimate import meta_path_for

    start = time.time()
    meta: dict[str, Any] = {"forgetless_version": forgetless.__version__}
    if args.corpus:
        from forgetless.replay.corpus import corpus_slice

        count = args.num_samples or 1000
        records = corpus_slice(args.corpus, count, args.max_chars, args.seed, args.corpus_order)
        meta.update(kind="corpus", source=args.corpus, settings={"num_samples": count,
                    "max_chars": args.max_chars, "seed": args.seed, "order": args.corpus_order})
    else:
        if not args.model:
            raise ValueError("--model is required (except with --corpus)")
        from forgetless.replay.generate import SamplingSettings

        model, tokenizer, path = _load(args.model, args.trust_remote_code)
        if args.prompts:
            from forgetless.replay.contextual import contextual_completions, read_prompts

            prompts = read_prompts(args.prompts, args.num_samples, args.seed)
            settings = SamplingSettings(num_samples=len(prompts), temperature=args.temperature, top_p=args.top_p,
                                        max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size)
            records = contextual_completions(model, tokenizer, prompts, settings)
            meta.update(kind="contextual", prompts=args.prompts, dropped_empty=len(prompts) - len(records))
        else:
            from forgetless.replay.generate import context_free_prompt, generate_context_free, sample_record

            settings = SamplingSettings(num_samples=args.num_samples or 1000, temperature=args.temperature,
                                        top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed,
                                        batch_size=args.batch_size, prompt=args.prompt)
            samples = generate_context_free(model, tokenizer, settings)
            records = [sample_record(s, tokenizer, settings.prompt) for s in samples]
            prompt_ids = context_free_prompt(tokenizer, settings.prompt)
            meta.update(kind="context_free", prompt_ids=prompt_ids, prompt_text=tokenizer.decode(prompt_ids),
                        generated_tokens=sum(len(s.token_ids) for s in samples),
                        finished_fraction=sum(s.finished for s in samples) / len(samples))
        meta.update(model=path, settings=settings.to_dict())
    meta.update(records=len(records), seconds=time.time() - start)
    write_jsonl(args.output, records)
    write_json(meta_path_for(args.output), meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "prompt_ids"}, indent=2))
    return 0


def cmd_kl_estimate(args: KLEstimateArgs) -> int:
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
    add_schema_flags(gen, GenerateArgs, show_defaults=True, standalone=True, exclusive=[("prompts", "corpus")])
    gen.set_defaults(func=schema_command(GenerateArgs, cmd_generate))

    kl = subparsers.add_parser("kl-estimate", help=cmd_kl_estimate.__doc__, description=cmd_kl_estimate.__doc__)
    add_schema_flags(kl, KLEstimateArgs, show_defaults=True, standalone=True)
    kl.set_defaults(func=schema_command(KLEstimateArgs, cmd_kl_estimate))
