"""The ``forgetless eval`` subcommand: parse flags, call ``evaluate_model``, write JSON."""

from __future__ import annotations

import json
from typing import Any

from forgetless.evaluation.config import EvalArgs
from forgetless.outputs import guard_result
from forgetless.schema_flags import Command, add_command


def cmd_eval(args: EvalArgs) -> int:
    """Evaluate a model: general ability, domain ability, and forgetting/gain against --base."""
    from forgetless.evaluation.report import evaluate_model

    if not (args.general or args.domain or args.choices or args.kl_samples):  # a model load for an empty result
        raise ValueError("eval: nothing to measure; give --domain, --general, --choices or --kl-samples")
    if args.output:  # before any work: the result JSON may replace an earlier result, never an input
        guard_result(args.output, {"--model": args.model, "--base": args.base, "--general": args.general,
                                   "--domain": args.domain, "--choices": args.choices,
                                   "--kl-samples": args.kl_samples}, "schema_version", "forgetless eval")
    options: dict[str, Any] = {
        "general_limit": args.general_limit, "choices": args.choices, "cloze": not args.no_cloze,
        "cloze_items": args.cloze_items, "kl_samples": args.kl_samples, "kl_limit": args.kl_limit, "batch_size": args.batch_size, "window": args.window,
        "max_new_tokens": args.max_new_tokens, "resamples": args.resamples, "confidence": args.confidence,
        "seed": args.seed, "progress": not args.no_progress, "answer_extraction": args.answer_extraction,
    }
    result = evaluate_model(args.model, general=args.general, domain=args.domain, limit=args.limit,
                            trust_remote_code=args.trust_remote_code, base=args.base, add_bos=args.add_bos,
                            chat_template=args.chat_template,
                            **options)
    if args.output:
        from forgetless.atomic import write_json

        write_json(args.output, result)
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_eval_parser(subparsers: Any) -> None:
    """Register ``forgetless eval``."""
    add_command(subparsers, "eval", Command(EvalArgs, cmd_eval), show_defaults=True)
