"""Learning curves: validation exact match and loss, and held-out general loss, at a few points while a model trains.

A method that scores low at the end of its budget may have stopped learning or
may have been stopped while still learning; only the curve tells which, so the
study's report draws it and its "why nothing ships" diagnosis quotes it.

The validation loss (mean NLL of the gold completions, nats/token) moves long before
exact match does: a task learned only after a few hundred steps scores 0% at every
early point, and the search's halving ranks such ties by it (``study/tuning/halving.py``).

The points go into the Trainer's ``state.log_history`` (``curve/validation_em``,
``curve/validation_loss``, ``curve/general_nats_per_token``), which checkpoints carry: a run killed and
resumed keeps the points measured before the kill, and the finished model's
``forgetless.json`` holds the whole curve.

Points are measured at the training precision: under bf16 training, accelerate
runs the model's forward in bf16 autocast, so a curve's general loss may differ
from the full fp32 evaluation in the fourth or fifth digit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback

from forgetless.data.records import file_stamp, read_records
from forgetless.evaluation.codelength import text_code_lengths
from forgetless.evaluation.domain import completion_loss, domain_accuracy


class LearningCurve(TrainerCallback):
    """Measure at step 0 and at ``points`` evenly spaced steps up to the last one (cheap: small slices).

    Args:
        tokenizer: the model's tokenizer.
        validation: the domain validation set; its first ``examples`` examples are scored.
        texts: held-out general documents (a few) whose loss in nats/token is recorded.
        points: measurements after step 0.
        answer_extraction: how validation answers are read (default: the file's, else answer_marker).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, validation: str, examples: int, texts: list[str],
                 points: int, answer_extraction: str | None = None) -> None:
        self.tokenizer, self.validation, self.examples, self.texts, self.points = (
            tokenizer, validation, examples, texts, points)
        self.answer_extraction = answer_extraction
        self.steps: set[int] = set()
        # A validation set of prompt/answer records has no completion to score: its curve has no loss.
        self.scores_loss = _has_completions(validation, examples)

    def _measure(self, model: torch.nn.Module, state: Any) -> None:
        was_training = model.training
        scored = domain_accuracy(model, self.tokenizer, self.validation, limit=self.examples, progress=False,
                                 answer_extraction=self.answer_extraction)
        loss = (completion_loss(model, self.tokenizer, self.validation, limit=self.examples, progress=False)
                if self.scores_loss else None)
        lengths = text_code_lengths(model, self.tokenizer, self.texts, progress=False)
        model.train(was_training)
        state.log_history.append({
            "curve/validation_em": scored["exact_match"],
            "curve/validation_loss": loss["completion_loss"] if loss else None,
            "curve/general_nats_per_token": sum(c.nats for c in lengths) / sum(c.tokens for c in lengths),
            "step": state.global_step,
        })

    def on_train_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                       **kwargs: Any) -> None:
        """Plan the points (the same on a resumed run) and measure the starting model."""
        self.steps = {max(1, round(state.max_steps * k / self.points)) for k in range(1, self.points + 1)}
        if model is not None and state.global_step == 0:
            self._measure(model, state)

    def on_step_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                    **kwargs: Any) -> None:
        """Measure at the planned steps."""
        if model is not None and state.global_step in self.steps:
            self._measure(model, state)


def _has_completions(validation: str, examples: int) -> bool:
    """Whether the first ``examples`` records of ``validation`` all have a completion to score. A file's answer
    is memoized by its size and modification time: a curve is made at every lookup of a search segment's cell."""
    path = Path(validation)
    return _file_has_completions(validation, examples, file_stamp(path)) if path.is_file() else \
        _read_has_completions(validation, examples)


@lru_cache(maxsize=32)
def _file_has_completions(validation: str, examples: int, stamp: tuple[int, int]) -> bool:
    return _read_has_completions(validation, examples)


def _read_has_completions(validation: str, examples: int) -> bool:
    return all(isinstance(r.fields.get("completion"), str) and r.fields["completion"]
               for r in read_records(validation)[:examples])


def curve_from_log(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curve points of a training log by step: ``[{"step", "validation_accuracy", "validation_loss",
    "general_nats_per_token"}]`` (``validation_loss`` None in a log written before it was measured)."""
    points = {e["step"]: {"step": e["step"], "validation_accuracy": e["curve/validation_em"],
                          "validation_loss": e.get("curve/validation_loss"),
                          "general_nats_per_token": e["curve/general_nats_per_token"]}
              for e in log_history if "curve/validation_em" in e}
    return [points[s] for s in sorted(points)]
