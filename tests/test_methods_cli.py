"""Every method trains from the command line; forgetless.json records its parameters and statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.cli import main

CASES = [
    ("talr", '{"tau": "token_median"}', None, [], "talr/tau"),
    ("dft", "{}", None, [], "dft/weight_mean"),
    ("flow", '{"normalize": "mean"}', None, [], "flow/tau"),
    ("flow_token", "{}", None, [], "flow_token/tau"),
    ("nll", "{}", '{"l2sp": {"weight": 1e-3}}', [], "l2sp/distance"),
    ("talr", "{}", None, ["--lora", "--lora-r", "4", "--lora-alpha", "4"], "talr/weight_std"),
]


@pytest.mark.parametrize("method, params, regularizers, extra, logged", CASES)
def test_method_trains_from_the_command_line(
    tiny_model_dir: Path, pc_data: Path, tmp_path: Path, method: str, params: str, regularizers: str | None,
    extra: list[str], logged: str,
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(pc_data), "--output", str(out),
            "--method", method, "--method-params", params, "--max-steps", "2", "--batch-size", "4",
            "--grad-accum", "2", "--logging-steps", "1", "--learning-rate", "1e-2", *extra]
    if regularizers:
        argv += ["--regularizers", regularizers]
    assert main(argv) == 0
    meta = json.loads((out / "forgetless.json").read_text())
    assert meta["config"]["method"] == method and meta["methods"]["objective"]["params"] == json.loads(params)
    assert all(logged in h for h in meta["log_history"] if "loss" in h)
    if regularizers:
        assert meta["methods"]["regularizers"]["l2sp"]["params"] == {"weight": 1e-3}
    if "--lora" in extra:
        assert meta["methods"]["lora"]["r"] == 4 and not (out / "adapter_config.json").exists()
    assert (out / "model.safetensors").is_file()


def test_learning_rate_sweep_writes_one_run_per_rate(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(pc_data), "--output", str(tmp_path / "sweep"),
            "--method", "dft", "--max-steps", "1", "--batch-size", "4", "--learning-rates", "1e-3", "3e-2"]
    assert main(argv) == 0
    for rate in (1e-3, 3e-2):
        meta = json.loads((tmp_path / "sweep" / f"lr-{rate:g}" / "forgetless.json").read_text())
        assert meta["config"]["learning_rate"] == rate and meta["config"]["learning_rates"] == []


def test_bad_method_parameters_are_reported_before_training(tiny_model_dir: Path, pc_data: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(pc_data), "--output", str(tmp_path / "r"),
            "--method", "talr", "--method-params", '{"tau": "average"}']
    assert main(argv) == 2
    assert "talr: tau must be" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
