"""Shared fixtures: a tiny tokenizer and a tiny Llama built from config, never downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Any accidental download must fail loudly.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from forgetless.testbed.tokenizer import train_tokenizer
# The hostile suite's tally (cases per class of issue 34, passing), printed by the controller at the end of a run.
from tests.hostile.tally import (  # noqa: F401
    pytest_collection_modifyitems, pytest_runtest_logreport, pytest_terminal_summary,
)

# The fixtures' 32-dim models gain nothing from a second thread, and on a busy
# 2-core machine thread spin-waiting made forward passes many times slower.
torch.set_num_threads(1)

TEXT = [
    "In the beginning was the word, and the word was with the model.",
    "The quick brown fox jumps over the lazy dog 0123456789 times.",
    "Answer: 12. Sum 0 + 1 = 1, 1 + 2 = 3. Glasgow Coma Scale, CURB-65, CHA2DS2-VASc.",
    "User: hello\nAssistant: hi there\nSystem: be brief",
] * 20


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    """A 384-token byte-level BPE with BOS/EOS/PAD and the testbed's chat template."""
    return train_tokenizer(TEXT, vocab_size=384, out_dir=tmp_path_factory.mktemp("tok"))


def make_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, 32-dim Llama over the fixture tokenizer, initialized from ``seed``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerFast) -> Path:
    """A saved tiny model + tokenizer directory, loadable with from_pretrained."""
    path = tmp_path_factory.mktemp("tiny-model")
    make_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines and return the path."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def pc_data(tmp_path: Path) -> Path:
    """A small prompt/completion training file."""
    rows = [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"} for a in range(4) for b in range(4)]
    return write_jsonl(tmp_path / "train.jsonl", rows)


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerFast) -> list[Path]:
    """Three tiny checkpoints (seeds 0, 1, 2) saved with the fixture tokenizer; read-only."""
    root = tmp_path_factory.mktemp("saved-models")
    paths = []
    for seed in (0, 1, 2):
        make_model(tokenizer, seed).save_pretrained(root / f"m{seed}")
        tokenizer.save_pretrained(root / f"m{seed}")
        paths.append(root / f"m{seed}")
    return paths


@pytest.fixture(scope="session")
def tiny_bf16_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: PreTrainedTokenizerFast) -> Path:
    """The tiny model (seed 0) stored in bf16, as real checkpoints ship; read-only."""
    path = tmp_path_factory.mktemp("tiny-bf16-model")
    make_model(tokenizer).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """lm-eval task YAMLs over a 6-item cloze file and a 6-record sums file: ``(include path, cloze, domain)``."""
    from forgetless.evaluation.cloze import build_cloze, write_cloze
    from forgetless.evaluation.lmeval import write_task_yamls

    tmp = tmp_path_factory.mktemp("lmeval-tasks")
    texts = [" ".join(f"word{d} number {i}" for i in range(60)) for d in range(4)]
    cloze = write_cloze(build_cloze(texts, n_items=6, context_words=8, continuation_words=2), tmp / "cloze.jsonl")
    rows = [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}", "answer": str(a + b)}
            for a in range(3) for b in range(2)]
    domain = write_jsonl(tmp / "domain.jsonl", rows)
    return write_task_yamls(tmp / "tasks", cloze, {"sums": domain}, max_gen_toks=6), cloze, domain
