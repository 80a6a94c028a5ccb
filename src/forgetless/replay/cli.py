"""``forgetless generate`` (replay data) and ``forgetless kl-estimate`` (the forgetting estimate).

- ``generate --model M --output OUT.jsonl``: context-free samples (``text`` records);
- ``generate --model M --prompts train.jsonl``: contextual replay (prompt/completion);
- ``generate --corpus general.jsonl``: a corpus slice (``text``), no model needed.

Each writes ``OUT.jsonl`` and a sidecar ``OUT.meta.json`` with the settings, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forgetless.atomic import write_json
from forgetless.outputs import guard_output, guard_result
from forgetless.replay.config import GenerateArgs, KLEstimateArgs
from forgetless.schema_flags import Command, add_command


def cmd_generate(args: GenerateArgs) -> int:
    """Write replay data: context-free samples, contextual completions, or a corpus slice."""
    from forgetless.replay.kl_estimate import meta_path_for
    from forgetless.replay.make_data import generate_replay_data

    inputs = {"--model": args.model, "--prompts": args.prompts, "--corpus": args.corpus}
    guard_output(args.output, inputs, args.overwrite, kind="file")  # before any sampling
    guard_output(meta_path_for(args.output), inputs, args.overwrite, kind="file", flag="--output's sidecar")
    meta = generate_replay_data(args.output, args.model, args.prompts, args.corpus, args.num_samples,
                                args.temperature, args.top_p, args.max_new_tokens, args.seed, args.batch_size,
                                args.prompt, args.max_chars, args.corpus_order, args.trust_remote_code,
                                args.add_bos, args.chat_template)
    print(json.dumps({k: v for k, v in meta.items() if k != "prompt_ids"}, indent=2))
    return 0


def recorded_base(recorded: Path) -> str:
    """The base model a trained model's ``forgetless.json`` names (``resolved.model``).

    Raises:
        ValueError: naming the file: not a JSON object, or without that key (a hand-written or foreign file).
    """
    from forgetless.models import read_json_object

    resolved = read_json_object(recorded).get("resolved")
    model = resolved.get("model") if isinstance(resolved, dict) else None
    if not isinstance(model, str) or not model:
        raise ValueError(f"{recorded}: expected 'resolved': {{'model': ...}} naming the base, as forgetless train "
                         "writes it; pass --base")
    return model


def cmd_kl_estimate(args: KLEstimateArgs) -> int:
    """Estimate KL(p_base || p_model) on held-out context-free samples of the base (a forgetting measure)."""
    from pathlib import Path

    from forgetless.replay.kl_estimate import kl_estimate, load_samples
    from forgetless.replay.make_data import load_for_sampling

    base_spec = args.base
    if base_spec is None:
        recorded = Path(args.model) / "forgetless.json"
        if not recorded.exists():  # a FIFO or device exists, and is refused by name when read
            raise ValueError(f"--base is required: {recorded} does not exist to say which base {args.model} was trained from")
        base_spec = recorded_base(recorded)
    if args.output:  # before any work: the result JSON may replace an earlier result, never an input
        guard_result(args.output, {"--model": args.model, "--base": args.base, "--samples": args.samples},
                     "kl_estimate", "forgetless kl-estimate")
    samples = load_samples(args.samples, args.limit)
    model, _, model_path = load_for_sampling(args.model, args.trust_remote_code)
    base, _, base_path = load_for_sampling(base_spec, args.trust_remote_code)
    estimate = kl_estimate(model, base, samples, args.batch_size, progress=True)
    result = {"model": model_path, "base": base_path, "samples": args.samples, "kl_estimate": estimate.to_dict()}
    if args.output:
        write_json(args.output, result)
    print(json.dumps(result, indent=2))
    return 0


def add_generate_parser(subparsers: Any) -> None:
    """Register ``generate`` and ``kl-estimate`` on the ``forgetless`` command's subparsers."""
    add_command(subparsers, "generate", Command(GenerateArgs, cmd_generate), show_defaults=True,
                exclusive=[("prompts", "corpus")], description=__doc__)
    add_command(subparsers, "kl-estimate", Command(KLEstimateArgs, cmd_kl_estimate), show_defaults=True)
