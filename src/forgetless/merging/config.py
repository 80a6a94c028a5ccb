"""The schema of ``forgetless merge``: one field per flag and YAML key, documented once.

``MergeConfig`` holds what every merge, sweep and budget shares; each rule's parameters
live in the rule's own ``RuleParams`` model (``forgetless.merging.base``), and
``merge_schema`` adds them all, from the registry, as optional fields marked with their
rule. The command then passes the ones given to ``build_rule``, which validates them with
the chosen rule's model (so a flag of another rule is refused, by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.fields import FieldInfo

from forgetless.evaluation.answer_extraction import EXPECTED, check_spec
from forgetless.merging.base import MergeRule

DEFAULT_ALPHAS = [round(0.1 * i, 2) for i in range(11)]


class MergeConfig(BaseModel):
    """Everything that determines one merge, sweep or budgeted choice, but the rule's parameters."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    models: list[str] = Field(description="Input models: directories (safetensors), LoRA adapter directories, "
                                          "or testbed:tiny. interpolate/sweep/budget: BASE FINETUNED; "
                                          "task_arithmetic: BASE then task models; slerp: FIRST (t=0) SECOND (t=1); "
                                          "cocktail: any order, "
                                          "--finetuned gives the fine-tuned one's index.")
    output: str | None = Field(None, description="Merged model directory (written atomically). A sweep writes "
                                                 "nothing; with --budget it writes the chosen alpha here.")
    rule: str = Field("interpolate", description="Coefficient rule; its parameters are the flags marked "
                                                 "'(rule: NAME)'.")
    sweep: bool = Field(False, description="Evaluate the interpolation of BASE and FINETUNED at every --alphas point "
                                           "in memory and print the curve.")
    ensemble: bool = Field(False, description="Sweep/budget the output ensemble (per-token mixture of the two "
                                              "models' distributions) instead of the weight interpolation.")
    alphas: list[float] = Field(default_factory=lambda: list(DEFAULT_ALPHAS), description="Sweep points in [0, 1].")
    general: str | None = Field(None, description="Held-out general text (JSONL with 'text') for general loss.")
    general_limit: int | None = Field(None, ge=1, description="Use only the first N general texts.")
    domain: str | None = Field(None, description="Domain validation set (prompt/completion) for exact match.")
    domain_limit: int | None = Field(None, ge=1, description="Use only the first N domain examples.")
    answer_extraction: str | None = Field(
        None, description=f"How answers are read from --domain generations: {EXPECTED.removeprefix('expected ')} "
        "(default: the file's 'answer_extraction' field, else answer_marker).")
    budget: float | None = Field(None, description="Forgetting budget EPS: choose the alpha with the best domain exact "
                                                    "match whose general forgetting is at most EPS (implies --sweep).")
    budget_unit: Literal["nats", "percent"] = Field("nats", description="Unit of --budget: nats per token, or percent "
                                                                        "of the base model's general loss.")
    curve: str | None = Field(None, description="Also write the sweep curve (JSON) to this file.")
    config_from: int = Field(0, ge=0, description="Index in --models of the model whose config, tokenizer, integer "
                                                  "tensors and buffers the output takes.")
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="dtype of the written model (inputs are combined in float32); auto: the first model's.")
    shard_size: str = Field("5GB", description="Largest output shard, e.g. 500MB or 2GB.")
    adapter_base: str | None = Field(None, description="Base model of LoRA adapter inputs (default: the one their "
                                                       "adapter_config.json names).")
    overwrite: bool = Field(False, description="Replace an existing --output.")
    trust_remote_code: bool = Field(False, description="Allow model code from the model directories.")

    @field_validator("answer_extraction")
    @classmethod
    def _known_extraction(cls, value: str | None) -> str | None:
        return check_spec(value)


def _rule_field_help(entries: list[tuple[str, FieldInfo]]) -> str:
    """Help of a parameter flag: each rule that takes it, its description and default."""
    parts = []
    for rule, field in entries:
        text = f"(rule: {rule}{', required' if field.is_required() else ''}) {field.description or ''}".rstrip()
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if default is not None:
            text += f" (default: {default})"
        parts.append(text)
    return " ".join(parts)


def merge_schema(rules: Mapping[str, type[MergeRule]]) -> type[MergeConfig]:
    """``MergeConfig`` with ``rule`` restricted to the registered names and every rule's
    parameters added as optional fields (None: not given), for flags and YAML keys.

    Built when asked, not at import, so a rule registered later is a ``--rule`` choice too.
    Type and range checks beyond the field's type are left to the rule's own model.

    Raises:
        TypeError: two rules take a parameter of the same name with different types, or a
            parameter has the name of a ``MergeConfig`` field (a mistake in a rule's file).
    """
    owners: dict[str, list[tuple[str, FieldInfo]]] = {}
    for name, rule in rules.items():
        for key, field in rule.params_model.model_fields.items():
            if key in MergeConfig.model_fields:
                raise TypeError(f"rule {name}: parameter {key!r} has the name of a forgetless merge setting")
            owners.setdefault(key, []).append((name, field))
    fields: dict[str, Any] = {
        "rule": (Literal[tuple(rules)], Field(MergeConfig.model_fields["rule"].default,  # type: ignore[valid-type]
                                               description=MergeConfig.model_fields["rule"].description)),
    }
    for key, entries in owners.items():
        # Optional[] of the annotation object: X and X | None are then one type (alpha: required in
        # interpolate, optional in cocktail).
        kinds = {Optional[field.annotation] for _, field in entries}
        if len(kinds) > 1:
            raise TypeError(f"rules {', '.join(r for r, _ in entries)} take parameter {key!r} with different "
                            f"types; give it one type, or another name")
        fields[key] = (kinds.pop(), Field(None, description=_rule_field_help(entries)))
    return create_model("MergeSchema", __base__=MergeConfig, **fields)
