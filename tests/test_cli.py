"""The forgetless command: train end to end from flags and YAML, and config errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from forgetless.cli import main


def test_train_from_yaml_with_flag_override(tiny_model_dir: Path, pc_data: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_model_dir), "data": str(pc_data), "max_steps": 2,
                                      "batch_size": 4, "learning_rate": 1e-3}))
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "out"), "--learning-rate", "5e-3"]) == 0
    meta = json.loads((tmp_path / "out" / "forgetless.json").read_text())
    assert meta["config"]["learning_rate"] == 5e-3 and meta["config"]["max_steps"] == 2
    assert "model written to" in capsys.readouterr().out


def test_unknown_key_is_named(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: m\ndata: d\noutput: o\nlearning_rat: 0.1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert f"{config}: key 'learning_rat': unknown key" in capsys.readouterr().err


def test_bad_value_and_missing_key_are_named(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: m\ndata: d\nlearning_rate: -1\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "key 'learning_rate': Input should be greater than 0" in err
    assert "key 'output': Field required" in err


def test_unknown_method_is_refused(capsys) -> None:
    assert main(["train", "--model", "m", "--data", "d", "--output", "o", "--method", "magic"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'magic'; expected one of [" in err and "'nll'" in err and "'talr'" in err


def test_bad_data_through_the_cli(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("not json\n")
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    assert f"{data}, line 1: expected a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_start_up_imports_stay_light() -> None:
    # `forgetless --help` and the merge command must not pay for transformers (about a
    # second); the merge benchmark holds the command to 3x the disk's read+write time.
    import subprocess
    import sys

    code = (
        "import sys, forgetless.cli, forgetless.merging.cli, forgetless.merging.engine; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "['torch']"  # the engine computes in torch; transformers is never needed
    code = "import sys, forgetless.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False False"
