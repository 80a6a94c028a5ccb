"""Log the context-free KL estimate of forgetting while training with replay.

The base model's NLLs of the held-out samples are computed once, before the first
step (the model still holds θ*); every ``every`` optimizer steps and at the end the
current model scores the same samples and the paired estimate of KL(p_θ* ‖ p_θ)
(``forgetless.replay.kl_estimate``) goes into the training log history as
``replay/kl``, ``replay/kl_ci_low``, ``replay/kl_ci_high`` and ``replay/kl_per_token``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from forgetless.replay.generate import Sample, SamplingSettings, generate_context_free
from forgetless.replay.kl_estimate import estimate_from_nll, load_samples, sequence_nll

logger = logging.getLogger(__name__)


class KLEstimateCallback(TrainerCallback):
    """Adds the KL estimate to the log history every ``every`` steps and at the end of training."""

    def __init__(self, base: PreTrainedModel, samples: list[Sample], every: int, batch_size: int = 32) -> None:
        self.samples, self.every, self.batch_size = samples, every, batch_size
        self.base_nll = sequence_nll(base, samples, batch_size)
        self.tokens = torch.tensor([len(s.token_ids) for s in samples])
        self._last_step = -1

    def _log(self, model: torch.nn.Module, state: Any) -> None:
        if state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        estimate = estimate_from_nll(sequence_nll(model, self.samples, self.batch_size), self.base_nll, self.tokens)
        entry = {"replay/kl": estimate.kl, "replay/kl_ci_low": estimate.ci_low, "replay/kl_ci_high": estimate.ci_high,
                 "replay/kl_per_token": estimate.kl_per_token, "step": state.global_step}
        state.log_history.append(entry)
        if state.is_world_process_zero:
            logger.warning("step %d: KL(base || model) estimate %.4f nats/sequence [%.4f, %.4f], %.5f nats/token",
                           state.global_step, estimate.kl, estimate.ci_low, estimate.ci_high, estimate.kl_per_token)

    def on_step_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        """Estimate every ``every`` steps."""
        if model is not None and state.global_step % self.every == 0:
            self._log(model, state)

    def on_train_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs: Any) -> None:
        """Estimate once more at the end."""
        if model is not None:
            self._log(model, state)


def kl_callback_for(
    replay: Any, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, seed: int
) -> KLEstimateCallback | None:
    """The KL-logging callback a replay config asks for, or None when it is off.

    Args:
        replay: a ``ReplayConfig``.
        base: the model before training (θ*).
        tokenizer: its tokenizer.
        seed: the run's seed; held-out samples are drawn with a seed derived from it,
            independent of any seed a replay file was generated with.
    """
    if replay.kl_eval_data:
        samples = load_samples(replay.kl_eval_data)
    elif replay.kl_eval_samples > 0:
        settings = SamplingSettings(num_samples=replay.kl_eval_samples, max_new_tokens=replay.kl_eval_max_new_tokens,
                                    seed=seed + 7_919_000, batch_size=32)
        samples = generate_context_free(base, tokenizer, settings, progress=False)
    else:
        return None
    return KLEstimateCallback(base, samples, replay.kl_eval_steps)
