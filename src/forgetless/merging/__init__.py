"""Post-hoc merging and ensembling (METHODS.md section 4): a streaming weight-merge
engine, one file per coefficient rule, an output ensemble, in-memory α sweeps and a
forgetting budget."""

from forgetless.merging.base import Coefficients, MergeRule
from forgetless.merging.checkpoint import Checkpoint, MergeError
from forgetless.merging.engine import merge_checkpoints
from forgetless.merging.ensemble import OutputEnsemble
from forgetless.merging.registry import RULES

__all__ = ["Checkpoint", "Coefficients", "MergeError", "MergeRule", "OutputEnsemble", "RULES", "merge_checkpoints"]
