"""Bad files and flags end in one line and exit 2, never a traceback (issue 18, items 4 and 8)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from forgetless.cli import build_parser, main


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``forgetless: error:`` line (progress bars aside); fails on a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("forgetless: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _truncated_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return target


def test_merge_into_a_path_under_a_file(saved_models: list[Path], tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "merged"
    assert main(["merge", "--models", *map(str, saved_models[:2]), "--rule", "average", "--output", str(out)]) == 2
    assert "Not a directory" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_merge_into_an_unwritable_directory(saved_models: list[Path], tmp_path: Path, capsys,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "locked"
    target.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the refusal is simulated where the writer creates its directory
        mkdir = Path.mkdir

        def refuse(self: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            if self.parent == target:
                raise PermissionError(13, "Permission denied", str(self))
            mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refuse)
    else:
        target.chmod(0o500)
    try:
        code = main(["merge", "--models", *map(str, saved_models[:2]), "--rule", "average",
                     "--output", str(target / "merged")])
    finally:
        target.chmod(0o700)
    assert code == 2
    line = _one_line(capsys)
    assert str(target) in line and "Permission denied" in line
    assert list(target.iterdir()) == []


def test_merge_with_a_truncated_shard(saved_models: list[Path], tmp_path: Path, capsys) -> None:
    broken = _truncated_copy(saved_models[1], tmp_path / "broken")
    out = tmp_path / "merged"
    assert main(["merge", "--models", str(saved_models[0]), str(broken), "--rule", "average",
                 "--output", str(out)]) == 2
    assert f"{broken / 'model.safetensors'}: not a complete safetensors file" in _one_line(capsys)
    assert not out.exists()


def test_train_and_generate_with_a_truncated_shard(tiny_model_dir: Path, pc_data: Path, tmp_path: Path,
                                                   capsys) -> None:
    broken = _truncated_copy(tiny_model_dir, tmp_path / "broken")
    assert main(["train", "--model", str(broken), "--data", str(pc_data), "--output", str(tmp_path / "o")]) == 2
    assert f"{broken / 'model.safetensors'}: not a complete safetensors file" in _one_line(capsys)
    assert main(["generate", "--model", str(broken), "--output", str(tmp_path / "g.jsonl"), "--num-samples", "1"]) == 2
    assert f"{broken / 'model.safetensors'}: not a complete safetensors file" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "train.jsonl"]


def test_remote_code_refusal_names_the_flag(tiny_model_dir: Path, pc_data: Path, tmp_path: Path, capsys) -> None:
    custom = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="custom-arch", auto_map={"AutoConfig": "modeling.CustomConfig",
                                                      "AutoModelForCausalLM": "modeling.CustomModel"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling.py").write_text("raise SystemExit('remote code ran')\n")
    assert main(["generate", "--model", str(custom), "--output", str(tmp_path / "g.jsonl"), "--num-samples", "1"]) == 2
    line = _one_line(capsys)
    assert f"{custom}: the model needs its own Python code" in line and "--trust-remote-code" in line


def test_negative_numbers_in_scientific_notation_need_no_equals_sign() -> None:
    args = build_parser().parse_args(["merge", "--alpha", "-1e-3", "--lambdas", "-2.5E+1", "-.5", "1"])
    assert args.alpha == -1e-3
    assert [float(v) for v in args.lambdas] == [-25.0, -0.5, 1.0]
    assert build_parser().parse_args(["train", "--learning-rate", "-1e-4"]).learning_rate == -1e-4


@pytest.mark.parametrize("value, expected", [("{bad", "Expecting property name enclosed in double quotes at character 1"),
                                              ("[1]", "got '[1]'")])
def test_a_bad_json_flag_says_json_object(value: str, expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--regularizers", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "argument --regularizers: expected a JSON object such as" in err and expected in err
    assert "invalid loads value" not in err


def test_a_bad_utf8_byte_in_a_config_is_located(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"model: m\ndata: \xff\n")
    assert main(["train", "--config", str(config)]) == 2
    assert f"{config}, line 2: not valid UTF-8 (byte 0xff at byte offset 15)" in _one_line(capsys)


@pytest.mark.parametrize("flags, expected", [
    (["--max-steps", "0"], "key 'max_steps': Value error, expected a positive number of steps, or -1"),
    (["--max-steps", "-5"], "key 'max_steps': Value error, expected a positive number of steps, or -1"),
    (["--packing", "--group-by-length"], "group_by_length has no effect with packing"),
    # transformers 5 reads a warmup of 1 or more as a step count: 1.0 would have warmed up for one step
    (["--warmup-ratio", "1.0"], "key 'warmup_ratio': Value error, expected a fraction of the training steps in [0, 1), "
                                "got 1 (transformers would read it as a number of warmup steps"),
    (["--warmup-ratio", "3"], "key 'warmup_ratio': Value error, expected a fraction of the training steps in [0, 1), "
                              "got 3"),
], ids=["max-steps 0", "max-steps -5", "packing with grouping", "warmup-ratio 1.0", "warmup-ratio 3"])
def test_settings_that_would_silently_do_something_else_are_refused(flags: list[str], expected: str, capsys) -> None:
    assert main(["train", "--model", "m", "--data", "d", "--output", "o", *flags]) == 2
    assert expected in _one_line(capsys)
