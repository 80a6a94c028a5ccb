"""Data from ``datasets``: ``hf:NAME[:CONFIG]:SPLIT`` specs and column mappings, tested offline.

A local ``save_to_disk`` folder stands in for a hub dataset (``hf:`` reads both through the
same path); a local Parquet file with a mapping goes through the same record path. The
expected records and examples are written out by hand, or are those of the equivalent
JSONL file, so a mapped dataset must train on exactly what the JSONL would.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from forgetless.cli import main
from forgetless.config import ConfigError, build_config
from forgetless.training.config import TrainConfig
from forgetless.data import DataError, data_hash, load_examples, read_records
from forgetless.study.config import DataConfig
from tests.conftest import write_jsonl

datasets.disable_progress_bars()

# GSM8K's columns and answer format: reasoning, then "#### <number>".
ROWS = [{"question": f"What is {a} plus {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}", "id": i}
        for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 6), (7, 8), (2, 2), (4, 1)])]
GSM8K_MAPPING = {"template": {"prompt": "Q: {question}\nA:", "completion": " {answer}"}, "replace": {"####": "Answer:"}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A ``DatasetDict`` with train (the first four rows) and test (the last two), saved with ``save_to_disk``."""
    path = tmp_path / "gsm"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:4]),
                          "test": datasets.Dataset.from_list(ROWS[4:])}).save_to_disk(str(path))
    return path


def _spec(source: str, **mapping: dict[str, str]) -> str:
    return json.dumps({"source": source, **mapping})


def _error(spec: str | Path) -> str:
    with pytest.raises(DataError) as info:
        read_records(spec)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_saved_folder_reads_by_split_and_slice_keeping_record_indices(folder: Path) -> None:
    assert [r.fields for r in read_records(f"hf:{folder}:test")] == ROWS[4:]
    sliced = read_records(f"hf:{folder}:train[1:3]")
    assert [r.fields for r in sliced] == ROWS[1:3]
    assert [r.where for r in sliced] == ["record 1", "record 2"]  # the index in the whole split
    assert [r.fields["id"] for r in read_records(f"hf:{folder}:train[2:]")] == [2, 3]
    single = folder.parent / "single"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(single))
    assert len(read_records(f"hf:{single}")) == len(ROWS)


def test_template_and_replace_make_exactly_the_mapped_fields(folder: Path) -> None:
    records = read_records(_spec(f"hf:{folder}:test", **GSM8K_MAPPING))
    assert [r.fields for r in records] == [
        {"prompt": "Q: What is 2 plus 2?\nA:", "completion": " 2 + 2 = 4\nAnswer: 4"},
        {"prompt": "Q: What is 4 plus 1?\nA:", "completion": " 4 + 1 = 5\nAnswer: 5"},
    ]  # `answer` and `id` are not carried over: a mapped record is what the mapping says


def test_fields_copy_columns_as_they_are(folder: Path) -> None:
    records = read_records(_spec(f"hf:{folder}:train[:1]", fields={"prompt": "question", "completion": "answer"}))
    assert records[0].fields == {"prompt": ROWS[0]["question"], "completion": ROWS[0]["answer"]}


def test_a_mapped_dataset_encodes_like_the_equivalent_jsonl(folder: Path, tokenizer, tmp_path: Path) -> None:
    by_hand = write_jsonl(tmp_path / "train.jsonl", [
        {"prompt": f"Q: {r['question']}\nA:", "completion": " " + r["answer"].replace("####", "Answer:")}
        for r in ROWS[:4]])
    datasets.Dataset.from_list(ROWS[:4]).to_parquet(str(tmp_path / "train.parquet"))
    expected = load_examples(by_hand, tokenizer)
    assert load_examples(_spec(f"hf:{folder}:train", **GSM8K_MAPPING), tokenizer) == expected
    assert load_examples(_spec(str(tmp_path / "train.parquet"), **GSM8K_MAPPING), tokenizer) == expected


def test_a_missing_hub_dataset_offline_says_which_and_how_to_get_it() -> None:
    message = _error("hf:nobody/no-such-dataset:main:train")
    assert message.startswith("hf:nobody/no-such-dataset:main:train: not in the datasets cache")
    assert "HF_HUB_OFFLINE=1" in message and "load_dataset('nobody/no-such-dataset', 'main', split='train')" in message
    assert "save_to_disk folder" in message


def test_a_mapping_reading_a_missing_column_names_the_column_and_the_dataset(folder: Path, tmp_path: Path) -> None:
    message = _error(_spec(f"hf:{folder}:train", fields={"prompt": "questoin", "completion": "answer"}))
    assert message == (f"hf:{folder}:train, field 'questoin': no such column (fields.prompt reads it); "
                       "the dataset's columns are ['answer', 'id', 'question']")
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    assert "field 'q': no such column (template.prompt reads it)" in _error(
        _spec(str(tmp_path / "d.parquet"), template={"prompt": "{q}"}))
    # JSONL has no schema: the first record without the column is named.
    jsonl = write_jsonl(tmp_path / "d.jsonl", [{"question": "a", "answer": "b"}, {"answer": "c"}])
    assert _error(_spec(str(jsonl), fields={"prompt": "question", "completion": "answer"})) == (
        f"{jsonl}, line 2, field 'question': missing; fields.prompt reads it")


def test_mapped_records_get_the_same_validation_and_errors(folder: Path, tokenizer, tmp_path: Path) -> None:
    rows = [{"q": "fine", "a": "ok"}] * 3 + [{"q": "empty answer", "a": "  "}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "bad"))
    spec = _spec(f"hf:{tmp_path / 'bad'}:train[1:]", fields={"prompt": "q", "completion": "a"})
    with pytest.raises(DataError) as info:
        load_examples(spec, tokenizer)
    assert str(info.value) == f"hf:{tmp_path / 'bad'}:train[1:], record 3, field 'completion': expected a non-empty string"
    listed = tmp_path / "listed"
    datasets.Dataset.from_list([{"q": "x", "n": [1, 2]}]).save_to_disk(str(listed))
    assert _error(_spec(f"hf:{listed}", template={"prompt": "{q}", "completion": "{n}"})) == (
        f"hf:{listed}, record 0, field 'n': expected a string or a number for template.completion, got list")


def test_bad_specs_fail_in_one_line(folder: Path) -> None:
    assert _error(f"hf:{folder}") == f"hf:{folder}: no split given; its splits are ['test', 'train'], e.g. hf:{folder}:test"
    assert _error(f"hf:{folder}:validation") == (
        f"hf:{folder}:validation: split 'validation' not in this dataset; its splits are ['test', 'train']")
    assert "expected a slice [start:stop]" in _error(f"hf:{folder}:train[:10%]")
    assert "the slice selects no record of a split of 4" in _error(f"hf:{folder}:train[4:]")
    assert "expected hf:NAME[:CONFIG]:SPLIT" in _error("hf:a:b:c:d")
    assert "no split given" in _error("hf:openai/gsm8k")
    assert _error(f"hf:{folder}-typo:train") == (f"hf:{folder}-typo:train: no such folder '{folder}-typo'; expected a "
                                                 "folder written by datasets' save_to_disk, or a hub dataset name")


def test_the_hash_covers_the_mapping_and_the_slice(folder: Path) -> None:
    plain = data_hash(f"hf:{folder}:train")
    assert data_hash(f"hf:{folder}:train") == plain
    assert len({plain, data_hash(f"hf:{folder}:train[1:]"), data_hash(f"hf:{folder}:test"),
                data_hash(_spec(f"hf:{folder}:train", **GSM8K_MAPPING))}) == 4


def test_the_hash_is_read_once_but_sees_a_rewritten_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from forgetless.data import records

    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "one"}\n')
    expected = hashlib.sha256(b"train.jsonl" + data.read_bytes()).hexdigest()  # name, then bytes
    first = data_hash(str(data))
    assert first == expected
    reads: list[Path] = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real(self))
    assert data_hash(str(data)) == first and not reads  # unchanged: the memo answers, nothing is read
    data.write_text('{"text": "two, longer"}\n')
    assert data_hash(str(data)) == hashlib.sha256(b"train.jsonl" + data.read_bytes()).hexdigest() != first
    assert records._digest_files.cache_info().hits >= 1


def test_train_config_folds_the_mapping_next_to_data_into_the_spec(folder: Path) -> None:
    values = {"model": "m", "data": f"hf:{folder}:train", "output": "o", **GSM8K_MAPPING}
    cfg = build_config(TrainConfig, values, "cfg.yaml")
    assert json.loads(cfg.data) == {"source": f"hf:{folder}:train", **GSM8K_MAPPING}
    assert cfg.fields == cfg.template == cfg.replace == {}
    # The same written as one mapping, and a config read back from its dump: the same spec.
    nested = build_config(TrainConfig, {"model": "m", "output": "o",
                                        "data": {"source": f"hf:{folder}:train", **GSM8K_MAPPING}}, "cfg.yaml")
    assert nested.data == cfg.data == TrainConfig.model_validate(cfg.model_dump()).data
    assert build_config(TrainConfig, {"model": "m", "data": "d.jsonl", "output": "o"}, "x").data == "d.jsonl"
    with pytest.raises(ConfigError, match="data already carries a field mapping"):
        build_config(TrainConfig, {**values, "data": nested.data}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"template.prompt: placeholder \{row.__class__\} is not a plain column"):
        build_config(TrainConfig, {**values, "template": {"prompt": "{row.__class__}"}}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"key 'test': .*unknown data spec key\(s\) \['feilds'\]"):
        build_config(DataConfig, {"train": "t.jsonl", "general": "g.jsonl",
                                  "test": {"source": "x", "feilds": {"prompt": "q"}}}, "study.yaml")


def test_a_study_data_entry_may_be_a_mapped_dataset(folder: Path) -> None:
    data = build_config(DataConfig, {"train": {"source": f"hf:{folder}:train", **GSM8K_MAPPING},
                                     "test": {"source": f"hf:{folder}:test", **GSM8K_MAPPING},
                                     "general": "general.jsonl"}, "study.yaml")
    assert [r.fields["completion"] for r in read_records(data.test)] == [" 2 + 2 = 4\nAnswer: 4", " 4 + 1 = 5\nAnswer: 5"]
    assert data.general == "general.jsonl" and data.validation is None


def test_train_from_an_hf_spec_with_mapping_flags(folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", str(tiny_model_dir), "--data", f"hf:{folder}:train",
                 "--template", json.dumps(GSM8K_MAPPING["template"]), "--replace", json.dumps(GSM8K_MAPPING["replace"]),
                 "--output", str(out), "--max-steps", "2", "--batch-size", "2", "--learning-rate", "1e-3"]) == 0
    meta = json.loads((out / "forgetless.json").read_text())
    assert json.loads(meta["data"]["path"]) == {"source": f"hf:{folder}:train", **GSM8K_MAPPING}
    assert meta["data"]["examples"] == 4 and meta["data"]["sha256"] == data_hash(meta["data"]["path"])
    assert meta["metrics"]["train_loss"] > 0


def test_a_missing_dataset_stops_training_with_one_line(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "--model", str(tiny_model_dir), "--data", "hf:nobody/no-such-dataset:train",
                 "--fields", '{"prompt": "q", "completion": "a"}', "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("forgetless: error: hf:nobody/no-such-dataset:train: not in the datasets cache")
    assert "\n" not in err and not (tmp_path / "run").exists()


def test_min_chars_skips_short_rows_like_wikitext_lines(tmp_path: Path) -> None:
    lines = ["", " = Heading = \n", "A paragraph long enough to count as a document.\n", "   \n", "Another one, long too.\n"]
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(tmp_path / "wiki"))
    records = read_records(_spec(f"hf:{tmp_path / 'wiki'}", fields={"text": "text"}, min_chars=20))
    assert [(r.where, r.fields["text"]) for r in records] == [("record 2", lines[2]), ("record 4", lines[4])]
    assert "min_chars=100 skips all 5 records" in _error(_spec(f"hf:{tmp_path / 'wiki'}", fields={"text": "text"},
                                                               min_chars=100))
    with pytest.raises(ValueError, match="min_chars: applies to the strings a mapping produces"):
        build_config(DataConfig, {"train": "t", "test": "t", "general": {"source": "g", "min_chars": 5}}, "s.yaml")


def test_a_study_reads_every_data_entry_from_mapped_datasets(folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    from forgetless.study.config import load_study
    from forgetless.study.running.runner import run_study

    datasets.Dataset.from_dict({"page": [f"The word was with the model {i}." for i in range(4)]}).save_to_disk(
        str(tmp_path / "wiki"))
    mapped = GSM8K_MAPPING
    cfg = {
        "name": "hub", "output": str(tmp_path / "study"), "base_model": str(tiny_model_dir),
        "data": {"train": {"source": f"hf:{folder}:train[:3]", **mapped},
                 "validation": {"source": f"hf:{folder}:train[3:]", **mapped},
                 "test": {"source": f"hf:{folder}:test", **mapped},
                 "general": {"source": f"hf:{tmp_path / 'wiki'}", "fields": {"text": "page"}}},
        "training": {"max_steps": 2, "batch_size": 2, "logging_steps": 1},
        "methods": [{"name": "sft", "learning_rates": [1e-3]}],
        "sweeps": {"interpolation": [], "ensemble": []},
        "eval": {"bootstrap": 20, "curve_points": 0},
        "context_free": {"kl_samples": 0},
    }
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    study = load_study(path)
    rows = [json.loads(line) for line in (run_study(study, print_fn=lambda _: None) / "results.jsonl").read_text()
            .splitlines()]
    assert [r["kind"] for r in rows] == ["base", "trained"]
    assert rows[0]["validation_n"] == 1 and rows[0]["duplicate_prompts"] == {"validation": 0, "test": 0}
    record = json.loads((Path(rows[1]["path"]) / "forgetless.json").read_text())
    assert record["config"]["data"] == study.data.train and record["data"]["examples"] == 3
