"""The one list of coefficient rules, by name, and the one way to build a rule from its parameters.

Adding a rule is one file (a ``RuleParams`` model and a ``MergeRule`` class, see
``forgetless.merging.base``) and one line in ``RULES``: the rule's parameter fields then
appear as ``forgetless merge`` flags and YAML keys (``forgetless.merging.config.merge_schema``),
and ``build_rule`` validates them with the rule's own model, for the CLI and the study alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from forgetless.merging.average import Average
from forgetless.merging.base import MergeRule, RuleContext
from forgetless.merging.errors import MergeError
from forgetless.merging.cocktail import Cocktail
from forgetless.merging.greedy_soup import GreedySoup
from forgetless.merging.interpolate import Interpolate
from forgetless.merging.slerp import Slerp
from forgetless.merging.task_arithmetic import TaskArithmetic

RULES: dict[str, type[MergeRule]] = {
    "interpolate": Interpolate,
    "average": Average,
    "greedy_soup": GreedySoup,
    "task_arithmetic": TaskArithmetic,
    "cocktail": Cocktail,
    "slerp": Slerp,
}


def flag(key: str) -> str:
    """The ``forgetless merge`` flag of a parameter (``num_examples`` -> ``--num-examples``)."""
    return "--" + key.replace("_", "-")


def _validation_message(name: str, rule: type[MergeRule], err: ValidationError) -> str:
    """One line naming each bad parameter by flag and YAML key, or saying which one is missing."""
    fields = rule.params_model.model_fields
    lines = []
    for item in err.errors():
        key = str(item["loc"][0]) if item["loc"] else None
        if key is None:  # a check across fields (a model validator)
            lines.append(f"{name}: {item['msg']}")
        elif item["type"] == "missing":
            lines.append(f"{name} needs {flag(key)} (key '{key}'): {fields[key].description}")
        else:
            lines.append(f"{name}: {flag(key)} (key '{key}'): {item['msg']}")
    return "; ".join(lines)


def build_rule(name: str, params: Mapping[str, Any], context: RuleContext,
               rules: Mapping[str, type[MergeRule]] = RULES) -> MergeRule:
    """The rule registered as ``name``, configured by ``params`` (validated by its ``params_model``).

    Args:
        name: a key of ``rules``.
        params: the parameters given (flags or YAML keys); those left out take the model's defaults.
        context: the input models and trust setting, for rules that read files when built.

    Raises:
        MergeError: an unknown rule; a parameter this rule does not take (the message names the
            flag, the rule, and the rules that do take it); a missing or invalid parameter.
    """
    if name not in rules:
        raise MergeError(f"unknown merge rule {name!r}; expected one of {sorted(rules)}")
    rule = rules[name]
    fields = rule.params_model.model_fields
    for key in params:
        if key not in fields:
            owners = sorted(other for other, cls in rules.items() if key in cls.params_model.model_fields)
            own = ", ".join(flag(k) for k in fields) or "none"
            raise MergeError(f"rule {name} does not take {flag(key)} (key '{key}'"
                             f"{'; a parameter of ' + ', '.join(owners) if owners else ''}); "
                             f"its parameters: {own}")
    try:
        validated = rule.params_model.model_validate(dict(params))
    except ValidationError as err:
        raise MergeError(_validation_message(name, rule, err)) from None
    return rule.from_params(validated, context)
