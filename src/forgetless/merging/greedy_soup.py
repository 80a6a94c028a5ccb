"""Greedy soup (Wortsman et al., arXiv 2203.05482): add models to a uniform average in
order of their own held-out score, keeping each only if the soup's score does not drop.

Soups are evaluated in memory: one host model's parameters are overwritten with the
average of the accepted models plus the candidate, so nothing is written per trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from forgetless.merging.base import Coefficients, MergeRule, RuleContext, RuleParams
from forgetless.merging.errors import MergeError

if TYPE_CHECKING:  # transformers costs a second at start-up; the merge command never needs it
    import torch
    from transformers import PreTrainedModel

Score = Callable[["PreTrainedModel"], float]


def float_state(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors of a checkpoint as float32 (they are summed)."""
    # imported here: the registry imports this module for `forgetless --help`, which needs no torch
    import torch

    from forgetless.merging.checkpoint import Checkpoint

    checkpoint = Checkpoint(path)
    return {name: checkpoint.read(name).to(torch.float32) for name in names}


class GreedySoupParams(RuleParams):
    """``--rule greedy_soup``: the held-out examples are required (they are what the soups are scored on)."""

    validation: str = Field(min_length=1, description="Held-out examples (JSONL: text, or prompt+completion); a "
                                                      "model is kept if the soup's loss on them does not rise.")


def loss_score(validation: str, context: RuleContext) -> Score:
    """Held-out score of a soup: minus the mean loss per token on ``validation``, with the
    tokenizer of the first model."""
    # imported here: the merge flags are built from this module, without transformers
    from forgetless.data.texts import read_texts
    from forgetless.merging.scoring import mean_loss
    from forgetless.models import load_tokenizer

    texts = read_texts(validation, "example")
    tokenizer = load_tokenizer(context.models[0], context.trust_remote_code)
    return lambda model: -mean_loss(model, tokenizer, texts)


@dataclass
class GreedySoup(MergeRule):
    """``score`` maps a model to a held-out score, higher is better (e.g. −loss or exact match)."""

    score: Score = field(repr=False)
    trust_remote_code: bool = False  # --trust-remote-code: the soups' host model may run its directory's code
    name = "greedy_soup"
    params_model = GreedySoupParams

    @classmethod
    def from_params(cls, params: GreedySoupParams, context: RuleContext) -> GreedySoup:  # type: ignore[override]
        """Score soups by their loss on ``params.validation`` (read, and the tokenizer loaded, now)."""
        return cls(score=loss_score(params.validation, context), trust_remote_code=context.trust_remote_code)

    def coefficients(self, models: list[Path]) -> Coefficients:
        # imported here: the merge flags are built from this module, without transformers or torch
        import torch

        from forgetless.merging.checkpoint import Checkpoint
        from forgetless.merging.scoring import load_for_scoring

        if len(models) < 2:
            raise MergeError(f"greedy_soup needs at least 2 models, got {len(models)}")
        host = load_for_scoring(models[0], self.trust_remote_code)
        params = dict(host.named_parameters())
        names = [n for n in Checkpoint(models[0]).tensors if n in params]
        singles = []
        for path in models:
            state = float_state(path, names)
            with torch.no_grad():
                for n in names:
                    params[n].copy_(state[n])
            singles.append(self.score(host))
        order = sorted(range(len(models)), key=lambda k: -singles[k])
        total = float_state(models[order[0]], names)
        accepted, best, trials = [order[0]], singles[order[0]], []
        for k in order[1:]:
            candidate = float_state(models[k], names)
            with torch.no_grad():
                for n in names:
                    params[n].copy_((total[n] + candidate[n]) / (len(accepted) + 1))
            score = self.score(host)
            trials.append({"model": str(models[k]), "score": score, "accepted": score >= best})
            if score >= best:
                accepted.append(k)
                best = score
                for n in names:
                    total[n].add_(candidate[n])
        values = [1.0 / len(accepted) if k in accepted else 0.0 for k in range(len(models))]
        return Coefficients(values, {"individual_scores": singles, "trials": trials, "soup_score": best,
                                     "accepted": [str(models[k]) for k in accepted]})
