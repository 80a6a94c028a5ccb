"""The one ``transformers.Trainer`` subclass: objective-weighted NLL reduced over the global batch.

Gradient accumulation, mixed precision, checkpointing, resuming, logging and
multi-process launching all come from ``transformers``/``accelerate``; this class
only replaces the loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from forgetless.losses import IGNORE, supervised_losses, token_nll
from forgetless.models import capabilities
from forgetless.objectives.base import Objective
from forgetless.regularizers.base import Regularizer


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or inf: the run stops, its last finite checkpoint kept, no model written."""


def divergence_advice(args: Any) -> str:
    """What to change after a divergence, with the run's learning rate."""
    return (f"training diverged; lower --learning-rate (now {args.learning_rate:g}) or the method's and regularizers' "
            "weights; no model was written")


class ForgetlessTrainer(Trainer):
    """A ``Trainer`` whose loss is ``sum_t w_t * l_t / N`` over the global batch.

    ``N`` is the ``num_items_in_batch`` the Trainer computes: the supervised tokens
    of all gradient-accumulation micro-batches, gathered over all data-parallel
    ranks. Since DDP averages gradients over ranks, the loss is multiplied by the
    number of processes, so every supervised token of the global batch carries the
    same weight whatever the batch layout.

    Objectives with a batch statistic (``statistic_scope``, e.g. TALR's τ) are fitted
    here: ``micro_batch`` scope on each micro-batch's live losses; ``global`` scope on
    the live losses when one micro-batch on one process *is* the global batch, and
    otherwise on the losses of a no-grad forward over all micro-batches of the step
    (gathered across ranks) in ``get_batch_samples``, before the first backward.
    """

    def __init__(
        self,
        *args: Any,
        objective: Objective,
        regularizers: list[Regularizer] | None = None,
        cache_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.regularizers = list(regularizers or [])
        # Where objectives cache pre-pass results (FLOW's base losses); None: no cache.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        # Our loss is already normalized over the accumulated batch, and the
        # Trainer must count num_items_in_batch for us.
        self.loss_is_scaled_for_ga = True
        self.model_accepts_loss_kwargs = True
        self._accepts_logits_to_keep: bool | None = None  # found on the first step

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Objective-weighted NLL; see the class docstring for the normalization."""
        labels = inputs["labels"]
        start = self._first_supervised_position(model, labels)
        kwargs = {"logits_to_keep": labels.shape[1] - start} if start else {}
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), **kwargs)
        token_loss, mask = token_nll(outputs.logits, labels[:, start:])
        if start:  # back to [B, T-1]: positions before `start` predict no supervised token
            token_loss = F.pad(token_loss, (start, 0))
            mask = F.pad(mask, (start, 0))
        with torch.no_grad():
            scope = self.objective.statistic_scope
            if scope == "micro_batch" or (scope == "global" and (self._step_is_one_micro_batch() or not model.training)):
                self.objective.fit(*supervised_losses(token_loss.detach(), mask))
            weights = self.objective.weights(token_loss.detach(), mask, inputs)
            if "sample_weight" in inputs:  # per-sample weights from the data (FLOW, replay λ)
                weights = weights * inputs["sample_weight"].to(weights.dtype)[:, None]
        total = (weights * token_loss * mask).sum()
        if num_items_in_batch is None:  # evaluation: a per-batch mean
            loss = total / mask.sum().clamp(min=1)
        else:
            loss = total / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        if self.regularizers and model.training:
            # Once per optimizer step: each micro-batch adds its share (the last step
            # of an epoch may have fewer micro-batches).
            steps = getattr(self, "current_gradient_accumulation_steps", None) or self.args.gradient_accumulation_steps
            for regularizer in self.regularizers:
                loss = loss + regularizer.penalty(model, inputs, outputs) / steps
        return (loss, outputs) if return_outputs else loss

    def _first_supervised_position(self, model: torch.nn.Module, labels: torch.Tensor) -> int:
        """The first position whose next token is supervised in any row, or 0 to keep every logit.

        The output head and the cross-entropy over the vocabulary are a large share of a
        step (40% of the tiny testbed model's FLOPs), and prompt positions need neither.
        Only while training, only for models whose ``forward`` takes ``logits_to_keep``,
        and only when no regularizer reads the batch's logits.
        """
        if not model.training or any(r.reads_batch_logits for r in self.regularizers):
            return 0
        if self._accepts_logits_to_keep is None:  # DDP's wrapper forwards keyword arguments to its module
            self._accepts_logits_to_keep = capabilities(getattr(model, "module", model)).logits_to_keep
        if not self._accepts_logits_to_keep:
            return 0
        supervised = (labels[:, 1:] != IGNORE).any(dim=0).nonzero()
        return int(supervised[0]) if len(supervised) else 0

    def _step_is_one_micro_batch(self) -> bool:
        """True when the micro-batch in hand is the whole global batch of the step."""
        return self.args.gradient_accumulation_steps == 1 and self.accelerator.num_processes == 1

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """Fetch the step's micro-batches; fit global-scope batch statistics on all of them."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.objective.statistic_scope == "global" and not self._step_is_one_micro_batch():
            self._fit_global_statistics(batch_samples)
        return batch_samples, num_items_in_batch

    @torch.no_grad()
    def _fit_global_statistics(self, batch_samples: list[dict[str, torch.Tensor]]) -> None:
        """One no-grad forward over the step's micro-batches, losses gathered over ranks, then ``fit``.

        Runs in eval mode (no dropout), so the statistics are those of the model's
        predictions, the same on every rank and for every batch layout.
        """
        model = self.model
        was_training = model.training
        model.eval()
        losses, samples = [], []
        for batch in batch_samples:
            inputs = self._prepare_inputs(batch)
            with self.compute_loss_context_manager():
                logits = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")).logits
            token, sample = supervised_losses(*token_nll(logits, inputs["labels"]))
            losses.append(token.float())
            samples.append(sample.float())
        model.train(was_training)
        token_losses = torch.cat(losses) if losses else torch.zeros(0, device=self.args.device)
        sample_losses = torch.cat(samples) if samples else torch.zeros(0, device=self.args.device)
        if self.accelerator.num_processes > 1:
            # Ragged over ranks: pad with -1 (losses are >= 0), gather, drop the padding.
            token_losses = self.accelerator.gather(self.accelerator.pad_across_processes(token_losses, pad_index=-1.0))
            sample_losses = self.accelerator.gather(self.accelerator.pad_across_processes(sample_losses, pad_index=-1.0))
            token_losses, sample_losses = token_losses[token_losses >= 0], sample_losses[sample_losses >= 0]
        self.objective.fit(token_losses, sample_losses)

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        """The Trainer's step, stopped at the first non-finite loss: every step after it only writes NaN weights.

        The check costs no extra device sync: the Trainer already tests each step's loss for NaN/inf when it logs.
        """
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(f"step {self.state.global_step + 1}: the training loss is {loss.item()}; "
                                   + divergence_advice(self.args))
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the objective's statistics (e.g. a temperature) to every training log."""
        if "loss" in logs:
            logs.update({f"{self.objective.name}/{k}": v for k, v in self.objective.stats().items()})
            for regularizer in self.regularizers:
                logs.update({f"{regularizer.name}/{k}": v for k, v in regularizer.stats().items()})
        super().log(logs, *args, **kwargs)
