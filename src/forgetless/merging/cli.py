"""``forgetless merge``: weight merges, α sweeps and the forgetting budget from the command line.

Flags are built from the fields of ``MergeConfig`` plus every registered rule's parameter
model (``merge_schema``), and ``--config merge.yaml`` takes the same keys (flags override
it; ``forgetless.schema_flags.Command`` merges and validates them), so the two cannot drift
apart. The rule is built by ``forgetless.merging.registry.build_rule``,
which validates its parameters with the rule's own model and refuses another rule's.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from typing import Any

from forgetless.merging.base import MergeRule, RuleContext, TensorRule
from forgetless.merging.errors import MergeError
from forgetless.merging.config import MergeConfig, merge_schema
from forgetless.merging.registry import RULES
from forgetless.merging.registry import build_rule as build_registered_rule
from forgetless.outputs import guard_output, guard_result
from forgetless.schema_flags import Command, add_command


def rule_params(cfg: MergeConfig) -> dict[str, Any]:
    """The rule parameters given in ``cfg`` (flags or YAML keys): its fields beyond ``MergeConfig``'s that are set."""
    return {key: getattr(cfg, key) for key in cfg.model_fields_set
            if key not in MergeConfig.model_fields and getattr(cfg, key) is not None}


def build_rule(cfg: MergeConfig) -> MergeRule:
    """The configured coefficient rule of ``cfg`` (see ``forgetless.merging.registry.build_rule``)."""
    return build_registered_rule(cfg.rule, rule_params(cfg), RuleContext(cfg.models, cfg.trust_remote_code))


def _print_weights(models: list[str], values: list[float], info: dict[str, Any]) -> None:
    losses = info.get("losses")
    cocktail = info.get("cocktail_weights")

    def cell(x: float | None, width: int) -> str:  # "-": not in the softmax, or its loss was not needed
        return f"{'-':>{width}}" if x is None else f"{x:>{width}.4f}"

    print(f"{'model':<48} {'coefficient':>12}" + (f" {'loss':>9} {'softmax(-L/T)':>14}" if cocktail else ""))
    for k, (model, value) in enumerate(zip(models, values)):
        extra = f" {cell(losses[k] if losses else None, 9)} {cell(cocktail[k], 14)}" if cocktail else ""
        print(f"{model:<48} {value:>12.6f}{extra}")


def merge_inputs(cfg: MergeConfig) -> dict[str, Any]:
    """What a merge reads, by flag (models, adapter base, example and evaluation files, rule parameters)."""
    return {f"--{name.replace('_', '-')}": getattr(cfg, name) for name in type(cfg).model_fields
            if name not in ("output", "curve")}


def cmd_merge_weights(cfg: MergeConfig) -> int:
    """Compute the rule's coefficients and write the merged model."""
    from forgetless.merging.engine import merge_checkpoints, resolve_inputs

    if not cfg.output:
        raise MergeError("--output is required to write a merge (a --sweep writes nothing)")
    rule = build_rule(cfg)
    with ExitStack() as stack:
        paths = [c.path for c in resolve_inputs(cfg.models, stack, cfg.adapter_base, cfg.trust_remote_code)]
        result = rule.coefficients(paths)
        per_tensor = isinstance(rule, TensorRule)
        print(f"{cfg.rule} coefficients" + (" (its linear counterpart: it combines each tensor itself)"
                                            if per_tensor else "") + ":")
        _print_weights(cfg.models, result.values, result.info)
        out = merge_checkpoints(paths, result.values, cfg.output, config_from=cfg.config_from,
                                shard_size=cfg.shard_size, overwrite=cfg.overwrite, dtype=cfg.dtype,
                                sentence_transformers_from=result.sentence_transformers_from,
                                sentence_transformers_pooling=result.sentence_transformers_pooling,
                                tensor_rule=rule if per_tensor else None,
                                record={"rule": cfg.rule, "inputs": cfg.models, "params": rule.params(),
                                        **result.info})
    if isinstance(rule, TensorRule):  # counts here; the names are in the record
        summary = rule.tensor_summary()
        print("per tensor: " + ", ".join(f"{key} {len(value) if isinstance(value, list) else value}"
                                         for key, value in summary.items()))
    dtype = json.loads((out / "forgetless-merge.json").read_text())["dtype"]
    print(f"merged model written to {out} ({dtype}; coefficients in {out}/forgetless-merge.json)")
    return 0


def _evaluator(cfg: MergeConfig, tokenizer: Any) -> Any:
    from forgetless.evaluation.codelength import code_length
    from forgetless.evaluation.domain import domain_accuracy
    from forgetless.data.texts import read_texts

    general = read_texts(cfg.general)[: cfg.general_limit] if cfg.general else None

    def evaluate(model: Any) -> dict[str, Any]:
        point: dict[str, Any] = {}
        if general is not None:
            point["general_nats"] = code_length(model, tokenizer, general).nats_per_token
        if cfg.domain:
            accuracy = domain_accuracy(model, tokenizer, cfg.domain, limit=cfg.domain_limit,
                                       answer_extraction=cfg.answer_extraction)
            point["exact_match"], point["domain_n"] = accuracy["exact_match"], accuracy["n"]
            point["answer_extraction"] = accuracy["answer_extraction"]
        return point

    return evaluate


def _print_point(point: dict[str, Any]) -> None:
    cells = [f"alpha={point['alpha']:<5g}"]
    if "general_nats" in point:
        cells.append(f"general {point['general_nats']:.4f} nats/token")
    if "exact_match" in point:
        cells.append(f"domain exact match {point['exact_match']:.4f} (n={point['domain_n']})")
    print("  " + "   ".join(cells) + f"   [{point['seconds']:.1f} s]", flush=True)


def _print_budget_table(choice: Any) -> None:
    unit = "nats/token" if choice.unit == "nats" else "% of base"
    print(f"\n{'alpha':>6} {'general nats/tok':>17} {'forgetting (' + unit + ')':>26} {'domain EM':>10}  within budget")
    for p in choice.curve:
        mark = "<- chosen" if choice.chosen is not None and p["alpha"] == choice.chosen["alpha"] else ""
        print(f"{p['alpha']:>6g} {p['general_nats']:>17.4f} {p['forgetting']:>26.4f} {p['exact_match']:>10.4f}  "
              f"{'yes' if p['within_budget'] else 'no':<4} {mark}")


def cmd_merge_sweep(cfg: MergeConfig) -> int:
    """The α curve in memory; with --budget, the α chosen under the forgetting budget."""
    from forgetless.atomic import write_json
    from forgetless.merging.budget import choose_alpha
    from forgetless.merging.engine import merge_checkpoints, resolve_inputs
    from forgetless.merging.ensemble import OutputEnsemble
    from forgetless.merging.interpolate import Interpolate, check_alpha
    from forgetless.merging.scoring import load_for_scoring
    from forgetless.merging.sweep import alpha_sweep
    from forgetless.models import load_tokenizer

    if len(cfg.models) != 2:
        raise MergeError(f"a sweep takes exactly 2 models (base, fine-tuned), got {len(cfg.models)}")
    budget = cfg.budget is not None
    if budget and not (cfg.general and cfg.domain):
        raise MergeError("--budget needs --general (held-out general text) and --domain (domain validation set)")
    if not (cfg.general or cfg.domain):
        raise MergeError("a sweep needs --general and/or --domain to evaluate each alpha on")
    if cfg.output and not budget:
        raise MergeError("--output with --sweep: choose an alpha with --budget, or merge one with --alpha")
    alphas = sorted({check_alpha(a) for a in cfg.alphas} | ({0.0} if budget else set()))
    with ExitStack() as stack:
        base, ft = (c.path for c in resolve_inputs(cfg.models, stack, cfg.adapter_base, cfg.trust_remote_code))
        tokenizer = load_tokenizer(str(ft), cfg.trust_remote_code)
        evaluate = _evaluator(cfg, tokenizer)
        kind = "output ensemble" if cfg.ensemble else "weight interpolation"
        print(f"{kind} of {cfg.models[0]} (alpha=0) and {cfg.models[1]} (alpha=1), in memory:")
        if cfg.ensemble:
            import time

            base_model, ft_model = load_for_scoring(base, cfg.trust_remote_code), load_for_scoring(ft, cfg.trust_remote_code)
            curve = []
            for alpha in alphas:
                start = time.time()
                point = {"alpha": alpha, **evaluate(OutputEnsemble(base_model, ft_model, alpha)),
                         "seconds": time.time() - start}
                curve.append(point)
                _print_point(point)
        else:
            curve = alpha_sweep(load_for_scoring(ft, cfg.trust_remote_code), base, ft, alphas, evaluate, _print_point)
        result: dict[str, Any] = {"models": cfg.models, "mode": kind, "curve": curve}
        if budget:
            choice = choose_alpha(curve, cfg.budget, cfg.budget_unit)  # type: ignore[arg-type]
            _print_budget_table(choice)
            print("\n" + choice.summary())
            result.update(curve=choice.curve, budget=cfg.budget, budget_unit=cfg.budget_unit, chosen=choice.chosen)
            if cfg.output and choice.chosen is not None:
                if cfg.ensemble:
                    print("(an output ensemble has no merged weights to write; --output ignored)")
                else:
                    alpha = choice.chosen["alpha"]
                    merge_checkpoints([base, ft], Interpolate(alpha).coefficients([base, ft]).values, cfg.output,
                                      config_from=1, shard_size=cfg.shard_size, overwrite=cfg.overwrite,
                                      dtype=cfg.dtype,
                                      record={"rule": "interpolate", "inputs": cfg.models, "params": {"alpha": alpha},
                                              "budget": result["budget"], "budget_unit": cfg.budget_unit,
                                              "curve": choice.curve})
                    print(f"model at alpha={alpha:g} written to {cfg.output}")
            elif cfg.output:
                print(f"nothing written to {cfg.output}: no alpha meets the budget")
    if cfg.curve:
        write_json(cfg.curve, result)
        print(f"curve written to {cfg.curve}")
    return 0


def cmd_merge(cfg: MergeConfig, config: str | None = None) -> int:
    """Merge model weights (interpolate, average, greedy_soup, task_arithmetic, cocktail, slerp), sweep alpha
    in memory, or choose alpha under a forgetting budget."""
    # Before any work (a rule's coefficients or a sweep can take minutes); the engine checks --output again.
    inputs = {**merge_inputs(cfg), "--config": config}
    if cfg.output:
        guard_output(cfg.output, inputs, cfg.overwrite)
    if cfg.curve:  # replaces an earlier curve (a JSON object with "curve"), never an input or a file of the user's
        guard_result(cfg.curve, inputs, "curve", "forgetless merge --curve", "--curve")
    if cfg.sweep or cfg.budget is not None:
        return cmd_merge_sweep(cfg)
    return cmd_merge_weights(cfg)


def add_merge_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``merge`` to the ``forgetless`` command."""
    # key_errors and --x/--no-x switches, as train (merge has always named a bad flag as a key).
    add_command(subparsers, "merge", Command(merge_schema(RULES), cmd_merge, key_errors=True, pass_config=True),
                switches=False)
