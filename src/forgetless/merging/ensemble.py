"""Output ensemble: p(y) = (1 − α) p_θ*(y) + α p_ft(y), mixed per token at inference
(the ensemble of arXiv 2506.01901). Two forward passes per token, no merged weights.

``OutputEnsemble`` is a ``torch.nn.Module`` that answers like a causal LM: ``forward``
returns an output whose ``.logits`` are log p(y) of the mixture (log-probabilities are
valid logits: softmax gives back the mixture), so loss, code length and exact-match
evaluation take it unchanged; ``generate`` decodes greedily (or samples) with each
model's own KV cache.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from forgetless.merging.interpolate import check_alpha
from forgetless.models import capabilities


def mix_log_probs(base_logits: torch.Tensor, ft_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """log((1 − α) softmax(base) + α softmax(ft)), computed stably in log space.

    Args:
        base_logits: [..., V] logits of the base model.
        ft_logits: [..., V] logits of the fine-tuned model.
        alpha: weight of the fine-tuned model in [0, 1].

    Returns:
        [..., V] log-probabilities of the mixture (float32 or wider).
    """
    dtype = torch.promote_types(base_logits.dtype, torch.float32)
    if alpha == 0:
        return torch.log_softmax(base_logits.to(dtype), dim=-1)
    if alpha == 1:
        return torch.log_softmax(ft_logits.to(dtype), dim=-1)
    base = torch.log_softmax(base_logits.to(dtype), dim=-1) + math.log1p(-alpha)
    ft = torch.log_softmax(ft_logits.to(dtype), dim=-1) + math.log(alpha)
    return torch.logaddexp(base, ft)


def _cache_arg(member: nn.Module) -> str:
    """The name a member's forward takes its KV cache under (``cache`` since transformers 5.2x)."""
    return capabilities(member).cache_arg or "past_key_values"


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as ``generate`` computes them."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)


class EnsembleCache:
    """One KV cache per ensemble member, selected together when sequences leave a batch."""

    def __init__(self, members: int) -> None:
        self.caches = [DynamicCache() for _ in range(members)]

    def get_seq_length(self) -> int:
        return self.caches[0].get_seq_length()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        for cache in self.caches:
            cache.batch_select_indices(indices)


class OutputEnsemble(nn.Module):
    """Per-token mixture of a base and a fine-tuned causal LM that share a tokenizer.

    Args:
        base: θ*, the pretrained model.
        finetuned: θ_ft.
        alpha: weight of the fine-tuned model's distribution, in [0, 1].
    """

    def __init__(self, base: PreTrainedModel, finetuned: PreTrainedModel, alpha: float) -> None:
        super().__init__()
        if base.config.vocab_size != finetuned.config.vocab_size:
            raise ValueError(f"vocabularies differ: base has {base.config.vocab_size} tokens, "
                             f"fine-tuned {finetuned.config.vocab_size}")
        self.base = base
        self.finetuned = finetuned
        self.alpha = check_alpha(alpha)
        self.config = finetuned.config
        self.generation_config = finetuned.generation_config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _members(self) -> list[tuple[PreTrainedModel, float]]:
        """The models whose output is needed: one at α ∈ {0, 1}, both otherwise."""
        if self.alpha == 0:
            return [(self.base, 0.0)]
        if self.alpha == 1:
            return [(self.finetuned, 1.0)]
        return [(self.base, 0.0), (self.finetuned, 1.0)]

    def _mix(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if len(outputs) == 1:
            return torch.log_softmax(outputs[0].to(torch.promote_types(outputs[0].dtype, torch.float32)), dim=-1)
        return mix_log_probs(outputs[0], outputs[1], self.alpha)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                past_key_values: object | None = None, use_cache: bool | None = None,
                logits_to_keep: int = 0, **kwargs: object) -> CausalLMOutputWithPast:
        """Mixture log-probabilities for every position (or the last ``logits_to_keep``).

        Args:
            input_ids: [B, T] token ids.
            attention_mask: [B, T], 1 for real tokens.
            labels: optional [B, T] targets (−100 ignored); if given, ``loss`` is the mean NLL
                of the next token under the mixture.
            position_ids: [B, T], passed to both models (left-padded decoding).
            past_key_values: ``None``, an empty ``DynamicCache`` (start decoding with a
                cache: it is replaced by one cache per model), or the ``EnsembleCache``
                a previous call returned. Incremental decoders (``forgetless.evaluation``)
                then cost one token per model per step instead of the whole prefix.
            use_cache: keep the per-model caches.
            logits_to_keep: compute only the last N positions' logits (0: all).

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` [B, T', V] = log p_mix, ``loss`` if labels
            were given, and the ``EnsembleCache`` when caching.
        """
        members = self._members()
        if past_key_values is not None and not isinstance(past_key_values, EnsembleCache):
            if past_key_values.get_seq_length() != 0:
                raise ValueError("OutputEnsemble: pass an empty cache to start, then the EnsembleCache it returns")
            past_key_values = EnsembleCache(len(members))
        extra: dict[str, object] = {}
        if position_ids is not None:
            extra["position_ids"] = position_ids
        if logits_to_keep:
            extra["logits_to_keep"] = logits_to_keep
        caches = past_key_values.caches if past_key_values is not None else [None] * len(members)
        # Each member takes its cache under its own name (transformers 5.2x: ``cache``); the cache is
        # filled in place, so the ensemble's EnsembleCache sees it.
        outputs = [m(input_ids=input_ids, attention_mask=attention_mask, **{_cache_arg(m): cache},
                     use_cache=use_cache if cache is not None else False, **extra).logits
                   for (m, _), cache in zip(members, caches)]
        log_probs = self._mix(outputs)
        loss = None
        if labels is not None:
            loss = nn.functional.nll_loss(log_probs[:, :-1].reshape(-1, log_probs.size(-1)),
                                          labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=log_probs, past_key_values=past_key_values)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0,
                 eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None,
                 generator: torch.Generator | None = None, **kwargs: object) -> torch.Tensor:
        """Decode from the mixture, one token at a time, with a KV cache per model.

        Left-padded batches work as with ``transformers`` ``generate``: positions skip the
        padding, and a sequence that produced EOS is continued with ``pad_token_id``.

        Args:
            input_ids: [B, T] prompts (left-padded).
            attention_mask: [B, T].
            max_new_tokens: tokens to add at most.
            do_sample: sample from the mixture (at ``temperature``) instead of taking its argmax.

        Returns:
            [B, T + N] prompts followed by the generated tokens (N ≤ max_new_tokens).
        """
        unsupported = sorted(k for k, v in kwargs.items() if v is not None and k not in ("use_cache",))
        if unsupported:
            raise ValueError(f"OutputEnsemble.generate: unsupported argument(s) {', '.join(unsupported)}; it decodes "
                             "greedily or samples at a temperature")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or [])
        pad = pad_token_id if pad_token_id is not None else (next(iter(eos)) if eos else 0)
        members = self._members()
        caches = [DynamicCache() for _ in members]
        sequences, mask = input_ids, attention_mask
        step_ids = input_ids
        finished = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            positions = _positions(mask)[:, -step_ids.size(1):]
            logits = [m(input_ids=step_ids, attention_mask=mask, position_ids=positions, **{_cache_arg(m): cache},
                        use_cache=True).logits[:, -1] for (m, _), cache in zip(members, caches)]
            log_probs = self._mix(logits)
            if do_sample:
                probs = torch.softmax(log_probs / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            else:
                token = log_probs.argmax(dim=-1)
            token = torch.where(finished, torch.full_like(token, pad), token)
            sequences = torch.cat([sequences, token[:, None]], dim=-1)
            mask = torch.cat([mask, torch.ones_like(token[:, None])], dim=-1)
            step_ids = token[:, None]
            if eos:
                finished |= torch.isin(token, torch.tensor(sorted(eos), device=token.device))
                if bool(finished.all()):
                    break
        return sequences
