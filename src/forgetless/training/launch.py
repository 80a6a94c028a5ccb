"""Train one model over several processes (GPUs) with ``accelerate launch``: DDP, FSDP, DeepSpeed ZeRO-3.

``train`` with ``launcher: accelerate`` comes here: the run's config is written
(with the launcher set back to ``python``) beside its checkpoints, the accelerate
config is resolved (FSDP's ``fsdp_transformer_layer_cls_to_wrap: auto`` becomes
the model's transformer block class, from its ``_no_split_modules``), and
``accelerate launch -m forgetless.cli train --config ...`` runs every process;
the Trainer inside each one finds the distributed environment accelerate set up,
and rank 0 writes the model atomically as usual. The shipped configs are in
``configs/accelerate/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from forgetless.atomic import write_json
from forgetless.models import load_config
from forgetless.training.config import TrainConfig

DISTRIBUTED_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED")


def transformer_layer_classes(model: str, trust_remote_code: bool = False) -> list[str]:
    """The transformer block class names of a model (``_no_split_modules``), read from its class, no weights loaded.

    Raises:
        ValueError: the model's class names none (FSDP needs the layer class named explicitly then).
    """
    from transformers import AutoModelForCausalLM

    config = load_config(model, trust_remote_code)
    try:
        cls = AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        raise ValueError(f"{model}: no causal-LM class known for {type(config).__name__}; set "
                         "fsdp_transformer_layer_cls_to_wrap in the accelerate config by hand") from None
    names = list(getattr(cls, "_no_split_modules", None) or [])
    if not names:
        raise ValueError(f"{model}: {cls.__name__} names no transformer block class (_no_split_modules); set "
                         "fsdp_transformer_layer_cls_to_wrap in the accelerate config by hand")
    return names


def read_accelerate_config(path: str | Path) -> dict[str, Any]:
    """Read an accelerate config file and check its ``distributed_type``.

    Raises:
        ValueError: not a mapping, or an unknown ``distributed_type``.
    """
    values = yaml.safe_load(Path(path).read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: an accelerate config must be a YAML mapping")
    kind = values.get("distributed_type")
    if kind not in DISTRIBUTED_TYPES:
        raise ValueError(f"{path}: distributed_type {kind!r}; expected one of {', '.join(DISTRIBUTED_TYPES)}")
    return values


def resolve_accelerate_config(path: str | Path, model: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """The accelerate config with ``fsdp_transformer_layer_cls_to_wrap: auto`` replaced by the model's block class."""
    values = read_accelerate_config(path)
    fsdp = values.get("fsdp_config") or {}
    if fsdp.get("fsdp_transformer_layer_cls_to_wrap") == "auto":
        classes = transformer_layer_classes(model, trust_remote_code)
        values["fsdp_config"] = {**fsdp, "fsdp_transformer_layer_cls_to_wrap": ",".join(classes)}
    return values


def launch_accelerate(cfg: TrainConfig) -> Path:
    """Run ``cfg`` under ``accelerate launch`` with its ``accelerate_config``; returns the output directory.

    Raises:
        RuntimeError: the launched run failed (its exit status; its output went to this terminal).
    """
    assert cfg.accelerate_config is not None
    output = Path(cfg.output)  # checked by train (forgetless.outputs.guard_output) before it launches
    work = output.with_name(output.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    model = cfg.model  # testbed: specs are resolved by the entry points
    accelerate_yaml = work / "accelerate.yaml"
    accelerate_yaml.write_text(yaml.safe_dump(resolve_accelerate_config(cfg.accelerate_config, model,
                                                                        cfg.trust_remote_code)))
    run_yaml = work / "launched.json"  # JSON is YAML: `forgetless train --config` reads it
    write_json(run_yaml, cfg.model_copy(update={"launcher": "python", "accelerate_config": None,
                                                 "model": model}).model_dump())
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_yaml),
               "-m", "forgetless.cli", "train", "--config", str(run_yaml)]
    result = subprocess.run(command)
    if result.returncode != 0:
        raise RuntimeError(f"accelerate launch ({cfg.accelerate_config}) failed with exit status "
                           f"{result.returncode}; checkpoints in {work} resume the run")
    return output
