"""Data layer: formats, masking, truncation, packing, and every bad-input message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgetless.data import IGNORE, DataError, load_examples, pack, read_records
from tests.conftest import write_jsonl


def test_prompt_completion_masks_the_prompt(tokenizer, pc_data: Path) -> None:
    examples = load_examples(pc_data, tokenizer)
    first = examples[0]
    prompt_len = len(tokenizer("Sum 0 and 0.\n", add_special_tokens=False)["input_ids"]) + 1  # + BOS
    assert first["input_ids"][0] == tokenizer.bos_token_id
    assert first["input_ids"][-1] == tokenizer.eos_token_id
    assert all(label == IGNORE for label in first["labels"][:prompt_len])
    assert first["labels"][prompt_len:] == first["input_ids"][prompt_len:]
    decoded = tokenizer.decode([t for t in first["labels"] if t != IGNORE], skip_special_tokens=True)
    assert decoded == " Answer: 0"


def test_completion_only_off_supervises_all_but_the_first(tokenizer, pc_data: Path) -> None:
    first = load_examples(pc_data, tokenizer, completion_only=False)[0]
    assert first["labels"][0] == IGNORE
    assert first["labels"][1:] == first["input_ids"][1:]


def test_text_format(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "the word was with the model"}])
    (example,) = load_examples(path, tokenizer)
    assert example["labels"] == [IGNORE, *example["input_ids"][1:]]


def test_messages_supervise_assistant_turns_only(tokenizer, tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "hello"},
    ]
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": messages}])
    (example,) = load_examples(path, tokenizer)
    supervised = tokenizer.decode([t for t in example["labels"] if t != IGNORE])
    # The generation prompt "Assistant:" is context; the reply and its EOS are supervised.
    assert supervised == " hi there<|eos|> hello<|eos|>"


def test_truncation_keeps_the_start(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "a\n", "completion": " the word " * 50}])
    (example,) = load_examples(path, tokenizer, max_length=16)
    assert len(example["input_ids"]) == 16


def test_packing_makes_full_blocks_with_unsupervised_first_token(tokenizer, pc_data: Path) -> None:
    blocks = load_examples(pc_data, tokenizer, packing=True, max_length=8)
    assert blocks and all(len(b["input_ids"]) == 8 and b["labels"][0] == IGNORE for b in blocks)
    stream = [t for e in load_examples(pc_data, tokenizer) for t in e["input_ids"]]
    assert [t for b in blocks for t in b["input_ids"]] == stream[: 8 * len(blocks)]


def test_pack_hand_computed() -> None:
    examples = [{"input_ids": [1, 2, 3], "labels": [IGNORE, 2, 3]}, {"input_ids": [4, 5], "labels": [IGNORE, 5]}]
    assert pack(examples, 2) == [
        {"input_ids": [1, 2], "labels": [IGNORE, 2]},
        {"input_ids": [3, 4], "labels": [IGNORE, IGNORE]},
    ]


def test_json_parquet_and_datasets_dir_read_the_same(tmp_path: Path) -> None:
    import datasets

    rows = [{"prompt": "p\n", "completion": " c"}, {"prompt": "q\n", "completion": " d"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "dsdir"))
    for path in ("d.json", "d.parquet", "dsdir"):
        assert [r.fields for r in read_records(tmp_path / path)] == rows


# --- bad input: each case names the file, the line or record, the field, and what was expected


def _error(tokenizer, path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_examples(path, tokenizer, **kwargs)
    return str(info.value)


def test_error_line_not_json(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n')
    message = _error(tokenizer, path)
    assert message.startswith(f"{path}, line 2:") and "expected a JSON object" in message


def test_error_line_not_an_object(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n[1, 2]\n')
    assert _error(tokenizer, path) == f"{path}, line 2: expected a JSON object, got list"


def test_error_missing_field(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "a"}])
    assert _error(tokenizer, path) == f"{path}, line 2, field 'completion': missing; expected a string"


def test_error_wrong_type(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": 3}])
    assert _error(tokenizer, path) == f"{path}, line 1, field 'completion': expected a string, got int"


def test_error_empty_dataset(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert _error(tokenizer, path) == f"{path}: the dataset is empty; expected at least one record"


def test_error_unknown_format(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "a"}])
    message = _error(tokenizer, path)
    assert message.startswith(f"{path}, line 1:") and "expected a 'text' field" in message and "['question']" in message


def test_error_too_long_nothing_supervised(tokenizer, tmp_path: Path) -> None:
    rows = [{"prompt": "a\n", "completion": " b"}, {"prompt": "the word " * 40, "completion": " b"}]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    message = _error(tokenizer, path, max_length=16)
    assert message.startswith(f"{path}, line 2, field 'prompt': the sample is ")
    assert "longer than max_length=16" in message and "no token to supervise" in message


def test_error_messages_without_assistant(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    assert _error(tokenizer, path) == f"{path}, line 1, field 'messages': expected at least one message with role 'assistant'"


def test_error_messages_bad_role(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "bot", "content": "hi"}]}])
    message = _error(tokenizer, path)
    assert message.startswith(f"{path}, line 1, field 'messages[0].role': expected one of")


def test_error_json_record_index(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"text": "a"}, {"text": 5}]))
    assert _error(tokenizer, path) == f"{path}, record 1, field 'text': expected a string, got int"


def test_error_missing_file_and_extension(tokenizer, tmp_path: Path) -> None:
    assert _error(tokenizer, tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file or directory"
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    assert "expected a .jsonl, .json or .parquet file" in _error(tokenizer, path)


def test_a_bad_utf8_byte_is_located_by_file_line_and_offset(tmp_path: Path) -> None:
    good = b'{"text": "caf\xc3\xa9"}\n'
    path = tmp_path / "d.jsonl"
    path.write_bytes(good + b'{"text": "bad \xff byte"}\n')
    offset = len(good) + len(b'{"text": "bad ')  # hand-counted: the 0xff byte's position in the file
    with pytest.raises(DataError, match=rf"^{path}, line 2: not valid UTF-8 \(byte 0xff at byte offset {offset}\)"):
        read_records(path)
    whole = tmp_path / "d.json"
    whole.write_bytes(b'[\n{"text": "a"},\n{"text": "\xff"}\n]')
    with pytest.raises(DataError, match=rf"^{whole}, line 3: not valid UTF-8 \(byte 0xff at byte offset 27\)"):
        read_records(whole)


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n')
    assert [r.fields["text"] for r in read_records(jsonl)] == ["a", "b"]
    whole = tmp_path / "d.json"
    whole.write_bytes(b'\xef\xbb\xbf[{"text": "a"}]')
    assert [r.fields["text"] for r in read_records(whole)] == ["a"]
