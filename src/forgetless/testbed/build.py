"""Build (once) and locate the embedded testbed: corpus splits, tokenizer, base model, tasks.

The testbed lives under ``$FORGETLESS_CACHE`` (default ``$XDG_CACHE_HOME/forgetless``
or ``~/.cache/forgetless``) in ``testbed/<preset>-<hash>``, the hash taken over the
recipe and the corpus, so it is built once and rebuilt only when either changes.
It is built in a temporary directory and renamed when complete.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase, set_seed

from forgetless.atomic import atomic_dir, write_json
from forgetless.training.config import TrainConfig
from forgetless.data import load_examples
from forgetless.evaluation.codelength import code_length
from forgetless.evaluation.domain import domain_accuracy
from forgetless.testbed.corpus import corpus_fingerprint, load_documents, split_documents
from forgetless.testbed.data_files import testbed_dir, write_general, write_tasks
from forgetless.testbed.presets import Preset, get_preset
from forgetless.testbed.tasks import FAMILIES, constant_answer_floor
from forgetless.testbed.tokenizer import train_tokenizer
from forgetless.training.run import make_trainer


@dataclass(frozen=True)
class Testbed:
    """Paths of a built testbed."""

    root: Path

    @property
    def base_model_dir(self) -> Path:
        return self.root / "base"

    @property
    def general_heldout(self) -> Path:
        return self.root / "general" / "heldout.jsonl"

    def task(self, family: str, split: str) -> Path:
        """Path of ``tasks/<family>/<split>.jsonl``."""
        if family not in FAMILIES:
            raise ValueError(f"unknown task family {family!r}; expected one of {sorted(FAMILIES)}")
        return self.root / "tasks" / family / f"{split}.jsonl"

    def manifest(self) -> dict[str, Any]:
        """The recipe and the base model's measured figures."""
        return json.loads((self.root / "manifest.json").read_text())


def _log(message: str) -> None:
    print(f"[testbed] {message}", flush=True)


def build_base_model(preset: Preset, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
    """A Llama causal LM of the preset's shape, freshly initialized from the preset's seed."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_heads,
        hidden_act=preset.hidden_act,
        max_position_embeddings=max(1024, preset.seq_len),
        tie_word_embeddings=True,
        attention_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    set_seed(preset.seed)
    return LlamaForCausalLM(config)


def _pretrain(preset: Preset, tokenizer: PreTrainedTokenizerBase, corpus: Path, work: Path) -> LlamaForCausalLM:
    model = build_base_model(preset, tokenizer)
    cfg = TrainConfig(
        model="(from config)",
        data=str(corpus),
        output=str(work),
        format="text",
        packing=True,
        max_length=preset.seq_len,
        learning_rate=preset.learning_rate,
        max_steps=preset.steps,
        batch_size=preset.batch_size,
        weight_decay=0.1,
        seed=preset.seed,
        precision=preset.precision,  # fixed by the recipe, never `auto` (see Preset.precision)
        logging_steps=20,
        save_steps=10**9,  # the build is short; a crash rebuilds from scratch
    )
    blocks = load_examples(corpus, tokenizer, "text", preset.seq_len, packing=True)
    _log(f"pretraining {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters on "
         f"{len(blocks) * preset.seq_len / 1e6:.2f}M tokens, {preset.steps} steps")
    trainer = make_trainer(cfg, model, tokenizer, blocks, work / "checkpoints", warmup_steps=preset.warmup_steps,
                           save_strategy="no")
    trainer.train()
    return model


def build_testbed(preset_name: str = "tiny", force: bool = False) -> Testbed:
    """Build the testbed of a preset if it is not cached, and return its paths.

    Steps: split the general corpus by document; train the tokenizer on the
    pretraining part; generate the domain tasks; pretrain the base model; measure
    the base model (held-out code length, exact match on every family's test
    split) into ``manifest.json``.
    """
    preset = get_preset(preset_name)
    final = testbed_dir(preset)
    if (final / "manifest.json").is_file() and not force:
        return Testbed(final)
    start = time.time()
    final.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with atomic_dir(final, overwrite=True) as tmp:
        write_general(tmp)  # the same files as a data-only copy (testbed.data_files)
        train_docs, heldout_docs = split_documents(load_documents())
        _log(f"general corpus: {len(train_docs)} documents for pretraining, {len(heldout_docs)} held out "
             f"({', '.join(d.name for d in heldout_docs)})")
        tokenizer = train_tokenizer([p for d in train_docs for p in d.paragraphs], preset.vocab_size, tmp / "tokenizer")
        _log(f"tokenizer: byte-level BPE, {len(tokenizer)} tokens")
        floors: dict[str, dict[str, Any]] = {}
        for name, splits in write_tasks(tmp, preset_name).items():
            answer, share = constant_answer_floor(splits["test"])
            floors[name] = {"answer": answer, "exact_match": share}
        _log(f"tasks: {', '.join(FAMILIES)} ({preset.task_sizes})")
        t0 = time.time()
        model = _pretrain(preset, tokenizer, tmp / "general" / "pretrain.jsonl", tmp / "pretrain")
        pretrain_seconds = time.time() - t0
        model.save_pretrained(tmp / "base")
        tokenizer.save_pretrained(tmp / "base")
        heldout = [json.loads(line)["text"] for line in open(tmp / "general" / "heldout.jsonl")]
        general = code_length(model, tokenizer, heldout, window=preset.seq_len)
        accuracy = {
            name: domain_accuracy(model, tokenizer, tmp / "tasks" / name / "test.jsonl")["exact_match"]
            for name in FAMILIES
        }
        metrics = {
            "heldout_nats_per_token": general.nats_per_token,
            "heldout_bits_per_byte": general.bits_per_byte,
            "uniform_nats_per_token": math.log(len(tokenizer)),
            "heldout_tokens": general.tokens,
            "test_exact_match": accuracy,
            # What always giving the most frequent test answer scores: the floor a gain must clear.
            "test_constant_answer_floor": floors,
            "pretrain_seconds": pretrain_seconds,
            "build_seconds": time.time() - start,
        }
        write_json(tmp / "manifest.json", {"recipe": preset.recipe(), "corpus": corpus_fingerprint(), "metrics": metrics})
        shutil.rmtree(tmp / "pretrain", ignore_errors=True)
    _log(f"built in {time.time() - start:.0f}s: held-out loss {general.nats_per_token:.3f} nats/token "
         f"(uniform {math.log(len(tokenizer)):.3f}); base exact match {accuracy}")
    return Testbed(final)
