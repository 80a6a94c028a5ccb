"""Post-hoc merging and ensembling (docs/methods.md#merging): a streaming weight-merge
engine, one file per coefficient rule, an output ensemble, in-memory α sweeps and a
forgetting budget.

Names are imported on first use (``forgetless.lazy``), so ``import forgetless.merging``
stays light: the merge engine needs torch and safetensors only, not transformers.
"""

from forgetless.lazy import lazy_getattr

_EXPORTS = {
    "Checkpoint": "checkpoint",
    "MergeError": "checkpoint",
    "Coefficients": "base",
    "MergeRule": "base",
    "merge_checkpoints": "engine",
    "OutputEnsemble": "ensemble",
    "RULES": "registry",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
