"""Training objectives: per-token weightings of the NLL, one file each."""

from forgetless.objectives.base import Objective
from forgetless.objectives.registry import OBJECTIVES, build_objective

__all__ = ["OBJECTIVES", "Objective", "build_objective"]
