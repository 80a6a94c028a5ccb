"""The ``forgetless eval`` subcommand: parse flags, call ``evaluate_model``, write JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a model: general ability, domain ability, and forgetting/gain against --base."""
    from forgetless.evaluation.report import evaluate_model

    options: dict[str, Any] = {
        "general_limit": args.general_limit, "choices": args.choices, "cloze": not args.no_cloze,
        "cloze_items": args.cloze_items, "kl_samples": args.kl_samples, "kl_limit": args.kl_limit, "batch_size": args.batch_size, "window": args.window,
        "max_new_tokens": args.max_new_tokens, "resamples": args.resamples, "confidence": args.confidence,
        "seed": args.seed, "progress": not args.no_progress,
    }
    result = evaluate_model(args.model, general=args.general, domain=args.domain, limit=args.limit,
                            trust_remote_code=args.trust_remote_code, base=args.base, **options)
    if args.output:
        from forgetless.atomic import write_json

        write_json(args.output, result)
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_eval_parser(subparsers: Any) -> None:
    """Register ``forgetless eval``."""
    p = subparsers.add_parser("eval", help=cmd_eval.__doc__, description=cmd_eval.__doc__)
    p.add_argument("--model", required=True, help="checkpoint dir, LoRA adapter dir, hub id, or testbed:PRESET")
    p.add_argument("--base", help="base model to measure forgetting and gain against (same forms as --model)")
    p.add_argument("--general", help="held-out general text (JSONL with 'text'): code length, and the cloze task")
    p.add_argument("--general-limit", type=int, help="score code length on the first N general texts only")
    p.add_argument("--choices", help="multiple-choice JSONL ({context, choices, label}) instead of the built cloze")
    p.add_argument("--no-cloze", action="store_true", help="do not build the cloze task from --general")
    p.add_argument("--cloze-items", type=int, default=200, help="cloze items built from --general (default 200)")
    p.add_argument("--kl-samples", help="context-free samples of the base (forgetless generate, T=1): with --base, "
                   "forgetting of cf_nll estimates KL(p_base || p_model)")
    p.add_argument("--kl-limit", type=int, help="use only the first N context-free samples")
    p.add_argument("--domain", help="domain test set (prompt/completion JSONL with 'answer' or 'Answer:')")
    p.add_argument("--limit", type=int, help="evaluate only the first N domain examples")
    p.add_argument("--batch-size", type=int, default=32, help="requests per forward pass / prompts decoded together")
    p.add_argument("--window", type=int, default=256, help="tokens per code-length window")
    p.add_argument("--max-new-tokens", type=int, help="generation budget (default: longest gold completion + 16)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval coverage")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the cloze builder")
    p.add_argument("--output", help="also write the result JSON here (atomically)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_eval)
