"""``forgetless train``: one fine-tuning run (or a learning-rate sweep) from flags and an optional ``--config`` YAML.

The flags are ``TrainConfig``'s fields; the YAML takes the same keys, and flags given on the
command line override it (``forgetless.schema_flags.Command``). The merged settings are
validated once and reach ``TrainingArguments`` unchanged (``training.run.training_arguments``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from forgetless.schema_flags import Command, add_command
from forgetless.training.config import TrainConfig


def cmd_train(cfg: TrainConfig) -> int:
    """Fine-tune a causal LM (plain SFT with --method nll)."""
    from forgetless.training.run import train_sweep

    for output in train_sweep(cfg):
        resolved = json.loads((output / "forgetless.json").read_text())["resolved"]
        print(f"model written to {output} ({resolved.get('save_dtype', 'fp32')}, "
              f"trained in {resolved.get('precision')})")
    return 0


def train_epilog() -> str:
    """The parameters of every method and regularizer, for ``forgetless train --help``."""
    # Imported only when the help is printed: the registries import torch, which the
    # command's start-up does not pay for.
    from forgetless.objectives import OBJECTIVES
    from forgetless.params import params_help
    from forgetless.regularizers import REGULARIZERS

    methods = {name: cls.params_model for name, cls in OBJECTIVES.items()}
    regularizers = {name: cls.params_model for name, cls in REGULARIZERS.items()}
    return (params_help("method parameters (--method-params '{\"tau\": 0.5}', or method_params: in --config):", methods)
            + "\n\n" + params_help("regularizer parameters (--regularizers '{\"l2sp\": {\"weight\": 0.001}}', "
                                    "or regularizers: in --config):", regularizers))


def add_train_parser(subparsers: Any) -> None:
    """Register ``forgetless train``."""
    # key_errors: train has always named a bad flag as a key ("command line: key 'learning_rate': ..."), and its
    # switches take --no-x, to turn off what a --config file turned on.
    add_command(subparsers, "train", Command(TrainConfig, cmd_train, key_errors=True), switches=False,
                help=cmd_train.__doc__, epilog_factory=train_epilog,
                formatter_class=argparse.RawDescriptionHelpFormatter)
