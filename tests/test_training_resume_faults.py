"""Resuming after a kill in the middle of a checkpoint save, and failures that must not block a rerun (issue 18)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from forgetless.training.config import TrainConfig
from forgetless.training.checkpoints import incomplete_reason
from forgetless.training.run import train
from tests.test_training import _Crash, _cfg


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def straight(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The final weights of an uninterrupted 6-step fp32 run (checkpoints at 3 and 6)."""
    return _weights(train(_cfg(tiny_model_dir, pc_data, tmp_path / "straight")))


def _kill_state(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> tuple[TrainConfig, Path]:
    """A run stopped after its complete checkpoint-3, with a fully written checkpoint-6 kept aside."""
    cfg = _cfg(tiny_model_dir, pc_data, tmp_path / "run", keep_checkpoints=True)
    donor = _cfg(tiny_model_dir, pc_data, tmp_path / "donor", keep_checkpoints=True)
    train(donor)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_Crash(3)])
    return cfg, tmp_path / "donor.work" / "checkpoints" / "checkpoint-6"


# Each kill point of Trainer._save_checkpoint (weights, optimizer, scheduler, rng, trainer_state.json last).
PARTIAL = {
    "optimizer written, no trainer_state.json": lambda d: (d / "trainer_state.json").unlink(),
    "trainer_state.json cut short": lambda d: (d / "trainer_state.json").write_text('{"global_step": 6, "log_hi'),
    "weights cut short": lambda d: _truncate(d / "model.safetensors"),
    "optimizer cut short": lambda d: _truncate(d / "optimizer.pt"),
    "only the weights": lambda d: [p.unlink() for p in d.iterdir() if p.name != "model.safetensors"],
    "empty directory": lambda d: [p.unlink() for p in d.iterdir()],
}


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", PARTIAL, ids=list(PARTIAL))
def test_a_partial_checkpoint_is_skipped_and_the_last_complete_one_resumed(
    damage: str, straight: dict[str, torch.Tensor], tiny_model_dir: Path, pc_data: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, donor = _kill_state(tiny_model_dir, pc_data, tmp_path)
    checkpoints = tmp_path / "run.work" / "checkpoints"
    partial = checkpoints / "checkpoint-6"
    shutil.copytree(donor, partial)
    PARTIAL[damage](partial)
    assert incomplete_reason(partial) is not None and incomplete_reason(checkpoints / "checkpoint-3") is None
    capsys.readouterr()
    out = train(cfg)
    err = capsys.readouterr().err
    assert f"skipping incomplete {partial}" in err and f"resuming from {checkpoints / 'checkpoint-3'}" in err
    assert _same(_weights(out), straight)


def test_resuming_is_announced(tiny_model_dir: Path, pc_data: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _cfg(tiny_model_dir, pc_data, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_Crash(3)])
    capsys.readouterr()
    train(cfg)
    assert f"resuming from {tmp_path / 'run.work' / 'checkpoints' / 'checkpoint-3'}" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"lr_scheduler": "foo"}, {"lora": True, "lora_target_modules": "foo_proj"}],
                         ids=["lr_scheduler", "lora_target_modules"])
def test_a_failure_before_training_does_not_block_the_corrected_rerun(
    bad: dict, tiny_model_dir: Path, pc_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(Exception):
        train(_cfg(tiny_model_dir, pc_data, tmp_path / "run", **bad))
    assert not (tmp_path / "run.work").exists() and not (tmp_path / "run").exists()
    assert train(_cfg(tiny_model_dir, pc_data, tmp_path / "run")).is_dir()


def test_an_unloadable_model_does_not_block_the_corrected_rerun(
    tiny_model_dir: Path, pc_data: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    _truncate(broken / "model.safetensors")
    with pytest.raises(Exception):
        train(_cfg(broken, pc_data, tmp_path / "run"))
    assert not (tmp_path / "run.work").exists()
    assert train(_cfg(tiny_model_dir, pc_data, tmp_path / "run")).is_dir()


def test_a_run_killed_before_its_first_checkpoint_does_not_block_a_changed_config(
    tiny_model_dir: Path, pc_data: Path, tmp_path: Path
) -> None:
    # A SIGKILL runs no cleanup: the config is recorded but no checkpoint was saved.
    work = tmp_path / "run.work"
    (work / "checkpoints").mkdir(parents=True)
    (work / "config.json").write_text('{"learning_rate": 0.5}')
    assert train(_cfg(tiny_model_dir, pc_data, tmp_path / "run")).is_dir()
