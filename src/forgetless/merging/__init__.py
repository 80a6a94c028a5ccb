"""Post-hoc merging and ensembling (METHODS.md section 4): a streaming weight-merge
engine, one file per coefficient rule, an output ensemble, in-memory α sweeps and a
forgetting budget.

Names are imported on first use, so ``import forgetless.merging`` stays light: the merge
engine needs torch and safetensors only, not transformers' model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Checkpoint": "forgetless.merging.checkpoint",
    "MergeError": "forgetless.merging.checkpoint",
    "Coefficients": "forgetless.merging.base",
    "MergeRule": "forgetless.merging.base",
    "merge_checkpoints": "forgetless.merging.engine",
    "OutputEnsemble": "forgetless.merging.ensemble",
    "RULES": "forgetless.merging.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'forgetless.merging' has no attribute {name!r}")
