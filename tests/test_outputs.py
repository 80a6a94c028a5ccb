"""No command destroys a user's file: an output that is, holds or sits inside an input is refused before any work,
and ``--overwrite`` replaces only what forgetless wrote (issue 34, class 1)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import yaml

from forgetless.cli import main
from forgetless.outputs import OutputError, guard_output, guard_result, refuse_overlap
from tests.conftest import write_jsonl
from tests.test_cli_errors import _one_line

ROWS = [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"} for a in range(3) for b in range(3)]


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (or of ``root`` itself)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_overlap_rules_by_hand(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    data = write_jsonl(tmp_path / "p" / "data.jsonl", ROWS)
    model = tmp_path / "model"
    model.mkdir()
    inputs = {"--data": str(data), "--model": str(model)}
    with pytest.raises(OutputError, match=r"--output .*/p: contains the --data .*data.jsonl"):
        refuse_overlap(tmp_path / "p", inputs)
    with pytest.raises(OutputError, match=r"--output .*data.jsonl: is the --data"):
        refuse_overlap(data, inputs)
    with pytest.raises(OutputError, match=r"--output .*/model/out: lies inside the --model"):
        refuse_overlap(model / "out", inputs)
    with pytest.raises(OutputError, match=r"--output .*/p/\.\.: contains the --data"):  # `..` is resolved
        refuse_overlap(f"{tmp_path}/p/..", inputs)
    link = tmp_path / "link"
    link.symlink_to(model)
    with pytest.raises(OutputError, match="is the --model"):  # so are symlinks
        refuse_overlap(link, inputs)
    with pytest.raises(OutputError, match="root"):
        refuse_overlap("/", {})
    refuse_overlap(tmp_path / "elsewhere", inputs)  # a sibling is fine
    refuse_overlap(tmp_path / "model-ft", inputs)  # a name that starts like an input is not inside it
    refuse_overlap(tmp_path / "x", {"--model": "HuggingFaceTB/SmolLM2-135M", "--data": None})  # not on disk


def test_overwrite_replaces_only_what_forgetless_wrote(tmp_path: Path) -> None:
    theirs, ours, empty, a_file = tmp_path / "theirs", tmp_path / "ours", tmp_path / "empty", tmp_path / "f.txt"
    theirs.mkdir(), ours.mkdir(), empty.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (ours / "forgetless.json").write_text("{}")
    a_file.write_text("mine")
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        guard_output(ours, {}, overwrite=False)
    guard_output(ours, {}, overwrite=True)
    guard_output(empty, {}, overwrite=True)
    with pytest.raises(OutputError, match=r"replaces only a directory forgetless wrote .* this one holds notes.txt"):
        guard_output(theirs, {}, overwrite=True)
    with pytest.raises(OutputError, match="is a file; --overwrite replaces only a directory forgetless wrote"):
        guard_output(a_file, {}, overwrite=True)
    guard_output(a_file, {}, overwrite=True, kind="file")
    with pytest.raises(OutputError, match="is a directory"):
        guard_output(empty, {}, overwrite=True, kind="file")


@pytest.fixture
def user_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A user's folder: data, notes, a corpus, a copy of a model (which a command must never lose)."""
    root = tmp_path / "P"
    root.mkdir()
    write_jsonl(root / "data.jsonl", ROWS)
    write_jsonl(root / "corpus.jsonl", [{"text": f"Some general text number {i}."} for i in range(20)])
    (root / "notes.txt").write_text("my notes")
    shutil.copytree(tiny_model_dir, root / "model")
    return root


def _train(model: Path, data: Path, output: str, *extra: str) -> list[str]:
    return ["train", "--model", str(model), "--data", str(data), "--output", output, "--max-steps", "1",
            "--batch-size", "2", *extra]


def cases(p: Path, model: Path) -> dict[str, tuple[list[str], str]]:
    """``{case: (argv, expected error)}``: each would have replaced a file of ``p`` before this check."""
    data, corpus = p / "data.jsonl", p / "corpus.jsonl"
    return {
        "train into the data's folder": (_train(model, data, str(p), "--overwrite"), "contains the --data"),
        "train over the data file": (_train(model, data, str(data), "--overwrite"), "is the --data"),
        "train over its model": (_train(p / "model", data, str(p / "model"), "--overwrite"), "is the --model"),
        "train inside its model": (_train(p / "model", data, str(p / "model" / "ft")), "lies inside the --model"),
        "train into sub/..": (_train(model, data, f"{p}/sub/..", "--overwrite"), "contains the --data"),
        "merge over an input": (["merge", "--models", str(p / "model"), str(model), "--alpha", "0.5", "--output",
                                 str(p / "model"), "--overwrite"], "is the --models"),
        "generate over its corpus": (["generate", "--corpus", str(corpus), "--num-samples", "2", "--output",
                                      str(corpus), "--overwrite"], "is the --corpus"),
        "eval over its data": (["eval", "--model", str(model), "--domain", str(data), "--no-cloze", "--output",
                                str(data)], "is the --domain"),
    }


@pytest.mark.parametrize("case", list(cases(Path("P"), Path("M"))))
def test_no_command_replaces_an_input(case: str, user_dir: Path, tiny_model_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = cases(user_dir, tiny_model_dir)[case]
    before = snapshot(user_dir)
    os.chdir(user_dir.parent)
    assert main(argv) == 2
    line = _one_line(capsys)
    assert expected in line and "choose another" in line, line
    assert snapshot(user_dir) == before  # nothing lost, nothing added
    assert sorted(p.name for p in user_dir.parent.iterdir()) == ["P"]  # no temporary model or work folder


def test_overwrite_of_a_users_folder_and_of_a_file(user_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert main(_train(tiny_model_dir, user_dir / "data.jsonl", str(folder), "--overwrite")) == 2
    assert "replaces only a directory forgetless wrote" in _one_line(capsys)
    assert main(_train(tiny_model_dir, user_dir / "data.jsonl", str(user_dir / "notes.txt"), "--overwrite")) == 2
    assert "lies inside" not in (line := _one_line(capsys)) and "is a file" in line
    assert (folder / "notes.txt").read_text() == "keep" and (user_dir / "notes.txt").read_text() == "my notes"


def test_generate_asks_before_replacing_and_overwrites_its_own_output(user_dir: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "slice.jsonl"
    argv = ["generate", "--corpus", str(user_dir / "corpus.jsonl"), "--num-samples", "2", "--output", str(out)]
    assert main(argv) == 0
    first = out.read_text()
    assert main([*argv[:-2], "--seed", "1", "--output", str(out)]) == 2
    assert "already exists; pass --overwrite" in _one_line(capsys) and out.read_text() == first
    assert main([*argv[:-2], "--seed", "1", "--output", str(out), "--overwrite"]) == 0
    assert out.read_text() != first


def test_a_study_may_not_write_over_its_config(tmp_path: Path, tiny_model_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "Some general text."}])
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"output": str(tmp_path), "base_model": str(tiny_model_dir),
                                      "data": {"train": str(data), "test": str(data), "general": str(general)},
                                      "methods": [{"name": "sft", "learning_rates": [1e-3]}]}))
    before = snapshot(tmp_path)
    assert main(["study", str(config)]) == 2
    assert "output " + str(tmp_path) + ": contains the config" in _one_line(capsys)
    assert snapshot(tmp_path) == before


def test_a_result_file_replaces_only_an_earlier_result(tmp_path: Path) -> None:
    """``eval --output`` and ``kl-estimate --output`` have no --overwrite: they replace an earlier result of theirs,
    and refuse a file of the user's (notes, a JSONL file, another JSON object) and an input."""
    earlier = tmp_path / "r.json"
    earlier.write_text('{"schema_version": 2, "model": "m"}')
    guard_result(earlier, {}, "schema_version", "forgetless eval")
    guard_result(tmp_path / "new.json", {}, "schema_version", "forgetless eval")
    notes, jsonl, other = tmp_path / "notes.txt", tmp_path / "d.jsonl", tmp_path / "c.json"
    notes.write_text("mine")
    write_jsonl(jsonl, ROWS)
    other.write_text('{"model": "m"}')
    for mine in (notes, jsonl, other):
        with pytest.raises(OutputError, match=f"{mine.name}: already exists and is not an earlier result of "
                                              "forgetless eval"):
            guard_result(mine, {}, "schema_version", "forgetless eval")
    with pytest.raises(OutputError, match="is the --domain"):
        guard_result(earlier, {"--domain": str(earlier)}, "schema_version", "forgetless eval")
