"""Regularizers added to the training loss: one file each, registered by name."""

from forgetless.regularizers.base import Regularizer
from forgetless.regularizers.registry import REGULARIZERS, build_regularizer

__all__ = ["REGULARIZERS", "Regularizer", "build_regularizer"]
