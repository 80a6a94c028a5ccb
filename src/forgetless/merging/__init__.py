"""Post-hoc merging and ensembling (docs/methods.md#merging): a streaming weight-merge
engine, one file per coefficient rule, an output ensemble, in-memory α sweeps and a
forgetting budget.

A coefficient rule is one file (``base.py`` says what it holds: a ``RuleParams`` model
and a ``MergeRule`` class) and one line in ``registry.RULES``; ``registry.build_rule``
builds it from its parameters, and ``forgetless merge`` takes them as flags and YAML keys.

Names are imported on first use (``forgetless.lazy``), so ``import forgetless.merging``
stays light: the merge engine needs torch and safetensors only, not transformers.
"""

from forgetless.lazy import lazy_getattr

_EXPORTS = {
    "Checkpoint": "checkpoint",
    "MergeError": "errors",
    "Coefficients": "base",
    "MergeRule": "base",
    "RuleContext": "base",
    "RuleParams": "base",
    "TensorRule": "base",
    "merge_checkpoints": "engine",
    "OutputEnsemble": "ensemble",
    "RULES": "registry",
    "build_rule": "registry",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
