"""Beyond Llama: a GPT-2 (learned absolute positions, Conv1D layers) through the whole command line.

A GPT-2 fails with an index error one token past ``n_positions``, so this also pins
that training, sampling and evaluation stay within the model's positions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from forgetless.cli import main
from forgetless.data.formats import encode_prompt
from forgetless.merging.checkpoint import Checkpoint
from tests.conftest import TEXT, write_jsonl

POSITIONS = 48


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, tokenizer) -> Path:
    path = tmp_path_factory.mktemp("gpt2")
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=POSITIONS,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _prompt_of(tokenizer, tokens: int) -> str:
    """The longest prompt of repeated words that encodes to at most ``tokens`` ids (BOS included)."""
    words = 1
    while len(encode_prompt(tokenizer, " ".join(["word"] * (words + 1)) + " 7?")) <= tokens:
        words += 1
    return " ".join(["word"] * words)


def test_gpt2_trains_samples_replays_evaluates_and_merges_within_its_positions(gpt2_dir, tokenizer, tmp_path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", [{"prompt": f"{_prompt_of(tokenizer, 24)} {i}?",
                                                   "completion": f" Answer: {i}"} for i in range(8)])
    # Test prompts leave two positions: greedy decoding must stop there, and scoring the
    # completion must cut the prompt from the left.
    test = write_jsonl(tmp_path / "test.jsonl", [{"prompt": f"{_prompt_of(tokenizer, POSITIONS - 2)} {i}?",
                                                  "completion": f" Answer: {i}"} for i in range(8)])
    samples = tmp_path / "cf.jsonl"
    assert main(["generate", "--model", str(gpt2_dir), "--output", str(samples), "--num-samples", "4",
                 "--max-new-tokens", "200"]) == 0
    lengths = [len(json.loads(line)["token_ids"]) for line in samples.read_text().splitlines()]
    assert max(lengths) <= POSITIONS - 1  # after BOS

    out = tmp_path / "ft"
    assert main(["train", "--model", str(gpt2_dir), "--data", str(data), "--output", str(out), "--max-steps", "2",
                 "--learning-rate", "1e-3", "--replay", str(samples), "--lora"]) == 0
    assert json.loads((out / "forgetless.json").read_text())["resolved"]["max_length"] == POSITIONS

    wise = tmp_path / "wise"
    assert main(["merge", "--models", str(gpt2_dir), str(out), "--alpha", "0", "--output", str(wise)]) == 0
    base, merged = Checkpoint(gpt2_dir), Checkpoint(wise)
    for name in base.tensors:
        assert torch.equal(base.read(name), merged.read(name)), name

    general = write_jsonl(tmp_path / "general.jsonl", [{"text": " ".join(TEXT)}])  # hundreds of tokens
    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(out), "--base", str(gpt2_dir), "--general", str(general), "--no-cloze",
                 "--domain", str(test), "--max-new-tokens", "100", "--output", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["general"]["tokens"] > POSITIONS and result["domain"]["n"] == 8


def test_fitting_to_positions_by_hand() -> None:
    from types import SimpleNamespace

    from forgetless.positions import fit_new_tokens, fit_pair

    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=8))
    # Scoring feeds context + continuation[:-1]: 6 + 3 - 1 = 8 fits; 7 + 3 - 1 = 9 loses the oldest token.
    assert fit_pair(8, list(range(6)), [10, 11, 12]) == (list(range(6)), [10, 11, 12])
    assert fit_pair(8, list(range(7)), [10, 11, 12]) == (list(range(1, 7)), [10, 11, 12])
    assert fit_pair(8, [0, 1], list(range(8))) == ([1], list(range(8)))  # one context token is enough
    with pytest.raises(ValueError, match="continuation of 9 tokens does not fit the model's 8 positions"):
        fit_pair(8, [0], list(range(9)))
    assert fit_new_tokens(model, 5, 100) == 3 and fit_new_tokens(model, 5, 2) == 2
    with pytest.raises(ValueError, match="prompt of 8 tokens leaves no room"):
        fit_new_tokens(model, 8, 1)
    assert fit_new_tokens(SimpleNamespace(), 10**6, 7) == 7  # no known limit: unchanged
