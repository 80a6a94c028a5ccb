"""Every shipped YAML under configs/ (found recursively) validates against its schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forgetless.config import TrainConfig, build_config
from forgetless.study.config import load_study

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))


def test_configs_are_found() -> None:
    names = {p.name for p in CONFIGS}
    assert {"quick.yaml", "full.yaml", "testbed_tiny_sft.yaml"} <= names and len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    values = yaml.safe_load(path.read_text())
    if path.parent.name == "accelerate":  # `accelerate launch` configs (training.launcher: accelerate)
        from forgetless.training.launch import read_accelerate_config

        assert read_accelerate_config(path)["num_processes"] >= 1
    elif "methods" in values:  # a study
        cfg = load_study(path)
        assert cfg.methods and cfg.data.test
    else:  # a `forgetless train` config; data and output come from the command line
        build_config(TrainConfig, {"data": "d.jsonl", "output": "out", **values}, str(path))
