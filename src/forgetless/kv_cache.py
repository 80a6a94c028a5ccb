"""A KV cache that grows in place, for the decoding loops (greedy evaluation, replay sampling).

transformers' ``DynamicCache`` appends each step's keys and values with ``torch.cat``, copying
every layer's whole cache once per generated token: O(L²) bytes over a sequence of L tokens,
about as much time as the attention itself on a CPU (issue 28's profile of SmolLM2-135M at
batch 32). Here each layer writes into buffers with room for the whole sequence (the prompt
plus the generation budget, known before the first step) and hands the model views of the
filled part, so a step copies only its own token. The values attended to are the same
numbers in the same order, so the logits, and greedy tokens, are those of ``DynamicCache``
(``tests/test_generate_batched.py``). Dropping finished rows (``batch_select_indices``) keeps the
buffers' room. Models with sliding-window layers keep a plain ``DynamicCache`` layer's
semantics (all positions kept, the mask hides the old ones), as the decoders did before.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch


@lru_cache(maxsize=1)
def _reserved_layer() -> type:
    """The layer class (built on first use: transformers is imported only when decoding)."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys and values ``[B, H, L, D]`` are views of ``[B, H, reserve, D]`` buffers."""

        reserve = 0  # positions to make room for at the first update (set per cache by ``reserved_cache``)

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            """Append ``[B, H, n, D]`` keys and values; returns the views ``[B, H, L + n, D]``."""
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            old = self.get_seq_length()
            new = old + key_states.shape[-2]
            buffers: tuple[torch.Tensor, torch.Tensor] | None = getattr(self, "_buffers", None)
            # Rebuilt when full, or when something replaced the views (crop, reorder_cache, ...).
            if buffers is None or buffers[0].shape[-2] < new or getattr(self, "_view", None) is not self.keys:
                capacity = max(new, self.reserve, 2 * old)
                buffers = (key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1])),
                           value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1])))
                if old:
                    buffers[0][..., :old, :].copy_(self.keys)
                    buffers[1][..., :old, :].copy_(self.values)
                self._buffers = buffers
            buffers[0][..., old:new, :].copy_(key_states)
            buffers[1][..., old:new, :].copy_(value_states)
            self.keys, self.values = buffers[0][..., :new, :], buffers[1][..., :new, :]
            self._view = self.keys
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            """Keep rows ``indices`` (finished sequences leave the batch), with the buffers' room."""
            if self.get_seq_length() > 0 and getattr(self, "_view", None) is self.keys:
                length = self.keys.shape[-2]
                self._buffers = (self._buffers[0][indices, ...], self._buffers[1][indices, ...])
                self.keys, self.values = self._buffers[0][..., :length, :], self._buffers[1][..., :length, :]
                self._view = self.keys
            else:
                super().batch_select_indices(indices)

    return ReservedLayer


def reserved_cache(reserve: int) -> Any:
    """An empty ``DynamicCache`` whose layers make room for ``reserve`` positions (prompt + new tokens)."""
    from transformers import DynamicCache

    layer = type("ReservedLayer", (_reserved_layer(),), {"reserve": int(reserve)})
    cache = DynamicCache()
    cache.layer_class_to_replicate = layer  # empty: its layers are created at the first update, of this class
    return cache
