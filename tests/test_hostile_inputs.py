"""Inputs that never end or that no parser was made for get one line and exit 2, never a hang or a traceback
(issue 34, classes 4 and 5; issue 29 item 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import forgetless.data.records as records
from forgetless.cli import main
from tests.conftest import write_jsonl
from tests.test_cli_errors import _one_line

DEEP = 20_000  # far past Python's recursion limit


def _train(model: Path, data: Path | str, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out), *extra]


def test_json_nested_thousands_deep(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * DEEP + "]" * DEEP
    jsonl = tmp_path / "deep.jsonl"
    jsonl.write_text(f'{{"prompt": "a", "completion": {deep}}}\n')
    assert main(_train(tiny_model_dir, jsonl, tmp_path / "o")) == 2
    assert "deep.jsonl, line 1: expected a JSON object, got JSON nested too deeply to read" in _one_line(capsys)
    json_file = tmp_path / "deep.json"
    json_file.write_text(deep)
    assert main(_train(tiny_model_dir, json_file, tmp_path / "o")) == 2
    assert "deep.json: expected a JSON list of objects, got JSON nested too deeply to read" in _one_line(capsys)
    config = tmp_path / "deep.yaml"
    config.write_text(f"learning_rate: {deep}\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "deep.yaml: not valid YAML (nested too deeply)" in _one_line(capsys)
    assert main(_train(tiny_model_dir, jsonl, tmp_path / "o", "--replay", '{"data": ' + deep + "}")) == 2
    assert "JSON nested too deeply" in _one_line(capsys)
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses a flag's value with its usage and exit 2
        main(_train(tiny_model_dir, jsonl, tmp_path / "o", "--method-params", '{"a": ' + deep + "}"))
    assert exit_info.value.code == 2
    assert "--method-params: expected a JSON object such as" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.json", "deep.jsonl", "deep.yaml"]


def test_a_lone_surrogate_is_named_with_its_line_and_field(tiny_model_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "fine", "completion": " ok"}\n{"prompt": "a\\ud800b", "completion": " c"}\n')
    assert main(_train(tiny_model_dir, data, tmp_path / "o")) == 2
    assert ("d.jsonl, line 2, field 'prompt': holds a lone surrogate (U+D800), which is not text; expected valid "
            "Unicode") in _one_line(capsys)
    listed = tmp_path / "d.json"
    listed.write_text('[{"prompt": "fine", "completion": " ok"}, {"prompt": "x", "completion": "\\udfff"}]')
    assert main(_train(tiny_model_dir, listed, tmp_path / "o")) == 2
    assert "d.json, record 1, field 'completion': holds a lone surrogate (U+DFFF)" in _one_line(capsys)
    pair = tmp_path / "pair.jsonl"  # an escaped surrogate *pair* is a real character and reads fine
    write_jsonl(pair, [{"text": "an emoji \U0001f600"}])
    assert records.read_records(pair)[0].fields["text"].endswith("\U0001f600")


@pytest.mark.parametrize("kind", ["fifo data", "fifo config", "link to /dev/zero"])
def test_inputs_that_never_end_are_refused_at_once(kind: str, tiny_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ("in.yaml" if kind == "fifo config" else "in.jsonl")
    if kind.startswith("fifo"):
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    argv = ["train", "--config", str(path)] if kind == "fifo config" else _train(tiny_model_dir, path, tmp_path / "o")
    assert main(argv) == 2  # a hang here would be the bug; pytest's own timeout is the process's
    assert "is not a regular file" in _one_line(capsys)


def test_a_line_past_the_limit_is_refused_before_it_is_read_whole(tiny_model_dir: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 2**20)  # the same check as at 64 MiB, on a 1 MiB line
    data = tmp_path / "long.jsonl"
    data.write_text('{"prompt": "a", "completion": " b"}\n' + "x" * (2**20 + 10) + "\n")
    assert main(_train(tiny_model_dir, data, tmp_path / "o")) == 2
    assert "long.jsonl, line 2: longer than 1 MiB; expected one JSON record per line" in _one_line(capsys)


def test_ctrl_c_ends_with_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import forgetless.training.cli as train_cli

    def interrupted(cfg: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "cmd_train", interrupted)
    assert main(["train", "--model", "m", "--data", "d", "--output", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip() == "forgetless: interrupted (nothing half-written was left)"


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", "{" * 3])
def test_report_on_a_garbled_results_file_names_it_and_the_line(garbage: str, tmp_path: Path) -> None:
    from forgetless.study.reporting.report import read_rows

    study = tmp_path / "study"
    study.mkdir()
    (study / "results.jsonl").write_text('{"id": "base", "kind": "base"}\n' + garbage + "\n")
    with pytest.raises(ValueError, match=r"results.jsonl, line 2: expected a study result row, got "):
        read_rows(study)
    (study / "results.jsonl").unlink()
    with pytest.raises(ValueError, match=r"results.jsonl: no such file; expected a study directory"):
        read_rows(study)
