"""The interface every coefficient rule implements: parameters in, coefficients out.

A rule is two things in one file: a pydantic parameter model (``RuleParams``; its fields,
with their descriptions and defaults, become ``forgetless merge`` flags and YAML keys)
and a ``MergeRule`` class, a configured instance whose ``coefficients`` returns one c_k
per model plus what it computed on the way (losses, weights), which the CLI prints and
the engine saves in ``forgetless-merge.json``. ``from_params`` builds the rule from a
validated parameter model; one line in ``forgetless.merging.registry.RULES`` makes it a
``--rule`` choice.

Most rules are linear: the engine forms θ = Σ_k c_k θ_k from the coefficients alone. A rule
that is not (SLERP, TIES, DARE) subclasses ``TensorRule`` instead and also defines
``combine_tensor``, which the engine calls once per float tensor, streamed as the linear path
is; its coefficients then only describe it in the record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # the rules are imported by `forgetless --help`, which needs no torch
    import torch


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


class TensorRule(MergeRule):
    """A rule that combines each tensor itself, beside (instead of) the linear sum of coefficients.

    The engine (``forgetless.merging.engine.merge_checkpoints`` with ``tensor_rule=``) reads the
    inputs' copies of one float tensor at a time, widens them to the compute dtype (float32,
    float64 when an input or the output is float64), calls ``combine_tensor``, checks that the
    result has the inputs' shape and is finite wherever the inputs were, and rounds it once to
    the output dtype. Integer tensors and buffers are copied from the config source as in
    the linear path; ``coefficients`` still runs first (its checks refuse bad settings before
    anything is read) and its values are recorded as the rule's linear counterpart.

    A tensor larger than the engine's chunk (an embedding, an LM head) is handed to a rule a
    slice of rows at a time only when the rule says it may be (``row_separable``): its
    ``tensor_statistics`` first sees the whole tensor once, slice by slice, and returns what
    ``combine_slice`` needs of it (SLERP: the angle between the two models' copies); otherwise
    the engine reads the whole tensor and calls ``combine_tensor``, and the merge's peak memory
    is then a few copies of the largest tensor.
    """

    # True: the merged value of a row depends on the whole tensor only through
    # ``tensor_statistics`` (so a slice of rows can be combined alone).
    row_separable: ClassVar[bool] = False

    def tensor_statistics(self, name: str, slices: Iterable[Sequence[torch.Tensor]]) -> Any:
        """What ``combine_slice`` needs of the whole tensor (row-separable rules only).

        Args:
            name: the tensor's name.
            slices: consecutive slices of rows covering the tensor in order, each one slice per
                model (shape ``(rows, *S[1:])``, widened as ``combine_tensor``'s inputs); lazy: a rule
                that needs nothing of the whole tensor returns without iterating, and nothing is read.
        """
        return None

    def combine_slice(self, name: str, tensors: Sequence[torch.Tensor], statistics: Any) -> torch.Tensor:
        """The merged value of a slice of rows (row-separable rules only): ``tensors`` as in
        ``combine_tensor`` but of shape ``(rows, *S[1:])``, ``statistics`` from ``tensor_statistics``."""
        raise NotImplementedError(f"rule {self.name} is not row-separable")

    @abstractmethod
    def combine_tensor(self, name: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """The merged value of one tensor.

        Args:
            name: the tensor's name in the checkpoints (rules may treat some tensors apart).
            tensors: its value in each model, in ``--models`` order, each of shape ``S``, all in
                one float dtype (float32, or float64). Read-only: they may be the engine's copies.

        Returns:
            A tensor of shape ``S`` (any float dtype; the engine rounds it to the output dtype).
            Returning one of ``tensors`` itself keeps that input bit for bit.
        """

    def tensor_summary(self) -> dict[str, Any]:
        """What the per-tensor combination did (JSON-able), saved in ``forgetless-merge.json``."""
        return {}
