"""Every shipped YAML under configs/ (found recursively) validates against its schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forgetless.config import build_config
from forgetless.training.config import TrainConfig
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


def test_cocktail_mix_cell_key_follows_the_examples_file_and_the_count(tmp_path: Path) -> None:
    # The mix's weights depend on the examples' content and on how many are used: editing the
    # validation file, or the count, must make a new mix (the count once overwrote the file's hash).
    from types import SimpleNamespace

    from forgetless.study.config import CocktailConfig
    from forgetless.study.running.stages.cocktail_sweep import _mix_cell

    examples = tmp_path / "validation.jsonl"
    examples.write_text('{"prompt": "1+1?", "answer": "2"}\n')
    models = ["hub/base", "hub/ft"]

    def key(count: int) -> str:
        ctx = SimpleNamespace(cfg=SimpleNamespace(cocktail=CocktailConfig(num_examples=count)), root=tmp_path)
        return _mix_cell(ctx, models, str(examples)).key

    first = key(3)
    assert key(3) == first
    assert key(4) != first
    examples.write_text('{"prompt": "2+2?", "answer": "4"}\n')
    assert key(3) != first
