"""``forgetless generate`` (context-free, contextual, corpus) and ``forgetless kl-estimate`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.cli import main
from forgetless.replay.kl_estimate import load_samples
from tests.conftest import write_jsonl


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_context_free_writes_samples_and_settings(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    args = ["generate", "--model", str(tiny_model_dir), "--num-samples", "5", "--max-new-tokens", "6", "--seed", "3"]
    assert main([*args, "--output", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--output", str(tmp_path / "b.jsonl")]) == 0
    rows = _lines(tmp_path / "a.jsonl")
    assert len(rows) == 5 and rows == _lines(tmp_path / "b.jsonl")  # deterministic
    assert all(set(r) == {"text", "token_ids", "finished"} and len(r["token_ids"]) <= 6 for r in rows)
    meta = json.loads((tmp_path / "a.meta.json").read_text())
    assert meta["kind"] == "context_free" and meta["settings"]["temperature"] == 1.0 and meta["settings"]["seed"] == 3
    assert meta["prompt_ids"] and meta["records"] == 5
    samples = load_samples(tmp_path / "a.jsonl")
    assert [s.token_ids for s in samples] == [r["token_ids"] for r in rows]

    # The base model against itself: KL estimate zero, inside its interval.
    assert main(["kl-estimate", "--model", str(tiny_model_dir), "--base", str(tiny_model_dir),
                 "--samples", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "kl.json")]) == 0
    est = json.loads((tmp_path / "kl.json").read_text())["kl_estimate"]
    assert est["kl"] == pytest.approx(0.0, abs=1e-6) and est["ci_low"] <= 0 <= est["ci_high"] and est["n"] == 5


def test_generate_contextual_and_corpus(tiny_model_dir: Path, pc_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx.jsonl"
    assert main(["generate", "--model", str(tiny_model_dir), "--prompts", str(pc_data), "--num-samples", "4",
                 "--max-new-tokens", "5", "--output", str(out)]) == 0
    rows = _lines(out)
    prompts = {r["prompt"] for r in _lines(pc_data)}
    assert 0 < len(rows) <= 4 and all(r["prompt"] in prompts and r["completion"].strip() for r in rows)
    assert json.loads((tmp_path / "ctx.meta.json").read_text())["kind"] == "contextual"

    corpus = write_jsonl(tmp_path / "general.jsonl", [{"text": "word " * 50}, {"text": "other " * 30}])
    assert main(["generate", "--corpus", str(corpus), "--num-samples", "3", "--max-chars", "40",
                 "--output", str(tmp_path / "corpus.jsonl")]) == 0
    pieces = _lines(tmp_path / "corpus.jsonl")
    assert len(pieces) == 3 and all(len(p["text"]) <= 40 for p in pieces)


def test_generate_errors_are_clear(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["generate", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert main(["kl-estimate", "--model", str(tmp_path), "--samples", str(tmp_path / "none.jsonl")]) == 2
    assert "--base is required" in capsys.readouterr().err


def test_the_library_function_writes_what_the_command_writes(tiny_model_dir: Path, pc_data: Path,
                                                             tmp_path: Path) -> None:
    from forgetless.replay.make_data import generate_replay_data

    for source in (["--model", str(tiny_model_dir)], ["--model", str(tiny_model_dir), "--prompts", str(pc_data)]):
        assert main(["generate", *source, "--num-samples", "4", "--max-new-tokens", "6", "--seed", "2",
                     "--output", str(tmp_path / "cli.jsonl"), "--overwrite"]) == 0
        # The study calls this with the command's defaults for everything it does not set.
        meta = generate_replay_data(str(tmp_path / "lib.jsonl"), str(tiny_model_dir), *source[3:], num_samples=4,
                                    max_new_tokens=6, seed=2)
        assert _lines(tmp_path / "lib.jsonl") == _lines(tmp_path / "cli.jsonl")
        cli_meta = json.loads((tmp_path / "cli.meta.json").read_text())
        assert {k: v for k, v in meta.items() if k != "seconds"} == {k: v for k, v in cli_meta.items() if k != "seconds"}
    with pytest.raises(ValueError, match="prompts and corpus: give one source"):
        generate_replay_data(str(tmp_path / "both.jsonl"), str(tiny_model_dir), str(pc_data), str(pc_data))
    assert not (tmp_path / "both.jsonl").exists()
