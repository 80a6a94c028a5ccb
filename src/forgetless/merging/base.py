"""The interface every coefficient rule implements: parameters in, coefficients out.

A rule is two things in one file: a pydantic parameter model (``RuleParams``; its fields,
with their descriptions and defaults, become ``forgetless merge`` flags and YAML keys)
and a ``MergeRule`` class, a configured instance whose ``coefficients`` returns one c_k
per model plus what it computed on the way (losses, weights), which the CLI prints and
the engine saves in ``forgetless-merge.json``. ``from_params`` builds the rule from a
validated parameter model; one line in ``forgetless.merging.registry.RULES`` makes it a
``--rule`` choice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


@dataclass
class Coefficients:
    """c_k for each model, and the rule's working (JSON-able) for the record.

    When a rule merges embedding models (``forgetless.merging.st_format``):
    ``sentence_transformers_from`` is the index of the model whose sentence-transformers
    pipeline (modules.json, pooling, ...) the output takes (None: the config source's, if it
    has one), and ``sentence_transformers_pooling`` the pooling of the pipeline written when
    that model has none (None: write none).
    """

    values: list[float]
    info: dict[str, Any] = field(default_factory=dict)
    sentence_transformers_from: int | None = None
    sentence_transformers_pooling: str | None = None


class RuleParams(BaseModel):
    """A rule's parameters: each field is a ``forgetless merge`` flag and YAML key.

    Give every field a description (it is the flag's help) and a default unless the rule
    cannot run without it (a field without one is required, and its absence is reported as
    "RULE needs --FLAG"). Two rules may share a field name (``alpha``) only with the same type.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class RuleContext:
    """What a rule may need besides its parameters when built from the command line.

    Attributes:
        models: the input models as given (``--models``), before resolution to directories.
        trust_remote_code: whether model code from the model directories may run.
    """

    models: list[str]
    trust_remote_code: bool = False


class MergeRule(ABC):
    """Turns a list of model directories into merge coefficients."""

    name: str = ""
    params_model: ClassVar[type[RuleParams]] = RuleParams

    @classmethod
    def from_params(cls, params: RuleParams, context: RuleContext) -> MergeRule:
        """The rule configured by ``params`` (already validated by ``params_model``).

        The default passes the fields as keyword arguments; override it when the rule's
        arguments are not its parameters one for one (a path to open, a score to build).
        """
        return cls(**params.model_dump())  # type: ignore[call-arg]  # a concrete rule's own fields

    @abstractmethod
    def coefficients(self, models: list[Path]) -> Coefficients:
        """Coefficients for ``models`` (already resolved to safetensors directories).

        Raises:
            MergeError: the parameters make no sense for this rule or this many models.
        """

    def params(self) -> dict[str, Any]:
        """The rule's parameters, for the record."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not callable(v)}
