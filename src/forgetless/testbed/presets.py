"""Testbed recipes: the architecture and pretraining schedule of each preset.

Per-preset facts are data, not code. Every field is part of the cache key, so
changing any of them builds a new testbed instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

# Bump when the testbed code changes what a recipe produces.
# 5: gcs_cot added, pretraining precision fixed by the recipe (issues 13, 14).
# 6: antidote_cot added (issue 14): a built testbed must hold every family's files.
# 7: the tokenizer declares that it adds BOS (issue 33): tokenizer(text) gives what the models train on.
TESTBED_VERSION = 7


@dataclass(frozen=True)
class Preset:
    """A deterministic recipe for the testbed's tokenizer, base model and tasks."""

    name: str
    vocab_size: int = 8192
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 688
    # Llama's SwiGLU; on the 2-core build machine silu and relu trained at the same
    # speed (2,300 tokens/s each), so the standard activation is kept.
    hidden_act: str = "silu"
    seq_len: int = 128
    batch_size: int = 16
    steps: int = 180
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    seed: int = 0
    # Pretraining runs in this precision on every machine, whatever `precision: auto`
    # would pick there: with bf16 autocast on CPUs that have native bf16 and fp32 on
    # the others, `testbed:tiny` named two different models (issue 13). It is part of
    # the recipe, so changing it builds a new testbed under a new hash.
    precision: str = "fp32"
    task_sizes: dict[str, int] = field(default_factory=lambda: {"train": 4000, "validation": 200, "test": 200})

    def recipe(self) -> dict:
        """The recipe as a plain dict (for hashing and the manifest)."""
        return {"testbed_version": TESTBED_VERSION, **asdict(self)}

    def recipe_hash(self) -> str:
        """SHA-256 (12 hex digits) of the recipe alone; the cache key adds the corpus."""
        return hashlib.sha256(json.dumps(self.recipe(), sort_keys=True).encode()).hexdigest()[:12]


PRESETS: dict[str, Preset] = {
    # Built in at most 5 minutes on 2 CPU cores.
    "tiny": Preset(name="tiny"),
    # Built in at most 30 minutes on 2 CPU cores: wider, deeper, trained longer.
    "small": Preset(
        name="small",
        hidden_size=384,
        num_layers=6,
        num_heads=6,
        intermediate_size=1024,
        seq_len=256,
        batch_size=16,
        steps=900,
        learning_rate=2e-3,
        warmup_steps=50,
        task_sizes={"train": 8000, "validation": 300, "test": 300},
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; the error lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown testbed preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
