"""One rule for BOS (issue 33): the tokenizer's own convention, everywhere forgetless builds a sequence.

Two small tokenizers: the fixture's, which adds BOS by default (as the testbed's and Llama 3's do), and the same
vocabulary declaring ``add_bos_token = false`` (as SmolLM2's GGUF does).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from forgetless import special_tokens
from forgetless.cli import main
from forgetless.data.formats import encode_prompt, encode_record
from forgetless.data.records import Record
from forgetless.evaluation.codelength import text_windows
from forgetless.evaluation.scoring import encode_pair
from forgetless.models import ModelLoadError, load_tokenizer
from forgetless.replay.generate import context_free_prompt
from tests.conftest import make_model, write_jsonl

# A chat template that writes BOS itself, like Llama 3's ("<|begin_of_text|>") or SmolLM2's ("<|im_start|>").
OWN_BOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}assistant:{% endif %}")
# One that does not: forgetless must add the convention's BOS itself.
NO_BOS_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                   "{% if add_generation_prompt %}assistant:{% endif %}")


@pytest.fixture(scope="module")
def bos_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase) -> Path:
    path = tmp_path_factory.mktemp("adds-bos")
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def no_bos_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerBase, bos_dir: Path) -> Path:
    """The fixture's vocabulary with ``add_bos_token: false``, and a tiny model over it."""
    path = tmp_path_factory.mktemp("no-bos")
    plain = AutoTokenizer.from_pretrained(bos_dir, add_bos_token=False)
    plain.save_pretrained(path)
    make_model(tokenizer, seed=3).save_pretrained(path)
    return path


def _record(**fields: object) -> Record:
    return Record(fields=dict(fields), where="line 1")


def test_the_two_conventions_are_read_from_the_tokenizers(bos_dir: Path, no_bos_dir: Path) -> None:
    with_bos, without = load_tokenizer(bos_dir), load_tokenizer(no_bos_dir)
    assert special_tokens.adds_bos(with_bos) and with_bos("hi")["input_ids"][0] == with_bos.bos_token_id
    assert not special_tokens.adds_bos(without) and without.bos_token_id is not None
    assert without("hi")["input_ids"] == without("hi", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("adds", [True, False])
def test_every_sequence_starts_as_the_tokenizer_says(adds: bool, bos_dir: Path, no_bos_dir: Path) -> None:
    """Training rows, eval prompts, scored pairs, code-length windows and generation contexts: exactly one BOS
    when the tokenizer adds it, the text's first token when it does not."""
    tok = load_tokenizer(bos_dir if adds else no_bos_dir)
    bos = tok.bos_token_id
    first = tok("The cat", add_special_tokens=False)["input_ids"][0]
    want = [bos, first] if adds else [first]
    sequences = {
        "text row": encode_record(tok, _record(text="The cat sat."), "text", "d.jsonl", 64)["input_ids"],
        "prompt/completion row": encode_record(tok, _record(prompt="The cat", completion=" sat."),
                                               "prompt_completion", "d.jsonl", 64)["input_ids"],
        "eval prompt": encode_prompt(tok, "The cat"),
        "scored context": encode_pair(tok, "The cat", " sat")[0],
        "code-length window": text_windows(tok, ["The cat sat."], 64)[0]["input_ids"],
    }
    for name, ids in sequences.items():
        assert ids[: len(want)] == want, name
        assert ids.count(bos) == (1 if adds else 0), name
    assert context_free_prompt(tok) == [bos]  # sampling starts a sequence: BOS whichever the convention


@pytest.mark.parametrize("adds", [True, False])
def test_a_chat_template_that_writes_bos_gets_no_second_one(adds: bool, bos_dir: Path, no_bos_dir: Path) -> None:
    tok = load_tokenizer(bos_dir if adds else no_bos_dir)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    tok.chat_template = OWN_BOS_TEMPLATE
    row = encode_record(tok, _record(messages=messages), "messages", "d.jsonl", 64)
    assert row["input_ids"][0] == tok.bos_token_id and row["input_ids"].count(tok.bos_token_id) == 1
    assert context_free_prompt(tok, "chat").count(tok.bos_token_id) == 1
    tok.chat_template = NO_BOS_TEMPLATE  # the convention's BOS is added only where the tokenizer adds it
    row = encode_record(tok, _record(messages=messages), "messages", "d.jsonl", 64)
    assert row["input_ids"].count(tok.bos_token_id) == (1 if adds else 0)
    assert (row["input_ids"][0] == tok.bos_token_id) == adds
    supervised = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tok.decode(supervised).startswith(" hello")  # the BOS shifted no label off the assistant's turn


def test_add_bos_forces_either_convention_and_is_saved(no_bos_dir: Path, bos_dir: Path, tmp_path: Path) -> None:
    forced = load_tokenizer(no_bos_dir, add_bos="true")
    assert encode_prompt(forced, "hi")[0] == forced.bos_token_id
    forced.save_pretrained(tmp_path / "saved")  # what train writes beside a model: other tools follow it
    assert AutoTokenizer.from_pretrained(tmp_path / "saved")("hi")["input_ids"][0] == forced.bos_token_id
    assert not special_tokens.adds_bos(load_tokenizer(bos_dir, add_bos=False))
    with pytest.raises(ValueError, match="add_bos"):
        special_tokens.parse_add_bos("maybe")


def test_add_bos_true_without_a_bos_token_is_one_clear_error(tmp_path: Path, bos_dir: Path) -> None:
    data = json.loads((bos_dir / "tokenizer_config.json").read_text())
    data.pop("bos_token", None)
    data["add_bos_token"] = False
    AutoTokenizer.from_pretrained(bos_dir).save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="has no BOS token"):
        load_tokenizer(tmp_path, add_bos="true")


def test_a_model_keeps_the_convention_it_was_trained_with(no_bos_dir: Path, tmp_path: Path) -> None:
    """Recorded in forgetless.json: kept under auto; a model from before the record keeps the old rule (BOS)."""
    model = tmp_path / "model"
    model.mkdir()
    for file in no_bos_dir.iterdir():
        (model / file.name).write_bytes(file.read_bytes())
    (model / "forgetless.json").write_text(json.dumps({"forgetless_version": "0.1.0", "config": {}}))
    with pytest.warns(UserWarning, match="trained with add_bos=true"):
        legacy = load_tokenizer(model)
    assert special_tokens.adds_bos(legacy)
    (model / "forgetless.json").write_text(json.dumps({"add_bos": False}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recorded convention is the tokenizer's: nothing to say
        assert not special_tokens.adds_bos(load_tokenizer(model))
    with pytest.warns(UserWarning, match="inputs differ from training"):
        assert special_tokens.adds_bos(load_tokenizer(model, add_bos="true"))


@pytest.mark.parametrize("flag", ["auto", "true"])
def test_train_records_the_convention_and_saves_a_tokenizer_that_follows_it(flag: str, no_bos_dir: Path,
                                                                            tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"Q{i}?", "completion": f" A{i}"} for i in range(4)])
    out = tmp_path / "out"
    assert main(["train", "--model", str(no_bos_dir), "--data", str(data), "--output", str(out), "--max-steps", "1",
                 "--batch-size", "2", "--precision", "fp32", "--add-bos", flag]) == 0
    want = flag == "true"
    assert json.loads((out / "forgetless.json").read_text())["add_bos"] is want
    saved = AutoTokenizer.from_pretrained(out)
    assert (saved("Q1?")["input_ids"][0] == saved.bos_token_id) is want


def test_study_cells_keep_their_keys_unless_the_inputs_changed(bos_dir: Path, no_bos_dir: Path) -> None:
    """forgetless always put BOS first: a tokenizer that adds BOS changes nothing, one that does not changes the
    inputs, so the cells' keys must change too (a resumed study then recomputes them)."""
    from forgetless.study.running.context import tokens_key

    assert tokens_key(load_tokenizer(bos_dir)) == {}
    assert tokens_key(load_tokenizer(no_bos_dir)) == {"add_bos": False}
    assert tokens_key(load_tokenizer(no_bos_dir, add_bos="true")) == {}
