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


def test_cocktail_count_is_num_examples_and_the_old_key_still_reads() -> None:
    from pydantic import ValidationError

    from forgetless.study.config import CocktailConfig

    assert CocktailConfig(num_examples=3).num_examples == 3
    with pytest.warns(FutureWarning, match="cocktail.num_examples"):
        old = CocktailConfig.model_validate({"examples": 3, "temperature": 2.0})
    assert (old.num_examples, old.temperature) == (3, 2.0)
    with pytest.raises(ValidationError, match="give only num_examples"):
        CocktailConfig.model_validate({"examples": 3, "num_examples": 4})


def test_cocktail_mix_cell_key_survives_the_rename(tmp_path: Path) -> None:
    # The key a finished mix was cached under before `examples` became `num_examples`,
    # written out by hand: the renamed field must find the same cell.
    from types import SimpleNamespace

    from forgetless.study.cells import content_key
    from forgetless.study.cocktail import _mix_cell
    from forgetless.study.config import CocktailConfig

    examples = tmp_path / "validation.jsonl"
    examples.write_text('{"prompt": "1+1?", "answer": "2"}\n')
    ctx = SimpleNamespace(cfg=SimpleNamespace(cocktail=CocktailConfig(num_examples=3)), root=tmp_path)
    before = {"models": ["hub/base", "hub/ft"], "examples": 3, "temperature": 5.0, "candidates": "others",
              "loss": "tokens"}
    assert _mix_cell(ctx, ["hub/base", "hub/ft"], str(examples)).key == content_key({"kind": "cocktail", **before})
