"""The architecture matrix: ten decoder families built tiny from config (never downloaded) run
train (full and LoRA), merge, eval and generate end to end through the command line.

Marked ``arch`` and deselected by default (``pytest -m arch`` runs it). Each case checks
what forgetless must get right for that architecture, not only that nothing raised:

- full fine-tuning moves the weights; LoRA with ``attention,mlp`` adapts exactly the
  modules ``MODULE_GROUPS`` names for the architecture and leaves every other tensor as it was;
- interpolation at α = 0.5 is ½ θ* + ½ θ_ft, tensor by tensor (×½ is exact in float32, so
  the hand computation is bit-exact), and α = 0 is the base bit for bit, with the same
  tensor names: tied embeddings (one stored tensor) and untied ones (two) both survive;
- the merged model loads with its embeddings still tied or untied, and its sliding window
  (Mistral) still limits what a position sees;
- ``eval`` measures general and domain ability and forgetting; ``generate`` samples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from transformers import PreTrainedTokenizerFast

from forgetless.cli import main
from forgetless.merging.checkpoint import Checkpoint
from forgetless.models import load_causal_lm
from forgetless.training.lora import MODULE_GROUPS
from tests.conftest import write_jsonl

pytestmark = pytest.mark.arch

WINDOW = 6  # Mistral's sliding window, shorter than the training examples


def _common(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    return {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}


def _decoder(**extra: Any) -> dict[str, Any]:
    """A 2-layer, 32-wide decoder with grouped-query attention (4 query heads, 2 key/value heads)."""
    return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 256, **extra}


# name -> (config class, its keyword arguments). Tied and untied embeddings alternate.
ARCHITECTURES: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "llama": ("LlamaConfig", lambda: _decoder(tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", lambda: _decoder(tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", lambda: _decoder(head_dim=8, tie_word_embeddings=True)),
    "mistral": ("MistralConfig", lambda: _decoder(sliding_window=WINDOW, tie_word_embeddings=False)),
    "gemma2": ("Gemma2Config", lambda: _decoder(head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                                tie_word_embeddings=True)),
    "gemma3_text": ("Gemma3TextConfig", lambda: _decoder(head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                                                         tie_word_embeddings=True)),
    "phi3": ("Phi3Config", lambda: _decoder(original_max_position_embeddings=256, tie_word_embeddings=False)),
    "gpt_neox": ("GPTNeoXConfig", lambda: {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                           "num_attention_heads": 4, "max_position_embeddings": 256,
                                           "tie_word_embeddings": False}),
    "olmo2": ("Olmo2Config", lambda: _decoder(tie_word_embeddings=False)),
    "gpt2": ("GPT2Config", lambda: {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256,
                                    "tie_word_embeddings": True}),
}


def _build(name: str, tokenizer: PreTrainedTokenizerFast, path: Path) -> Path:
    """A tiny ``name`` model, and the fixture tokenizer as transformers loads it for that architecture.

    transformers 5 picks some tokenizer classes by ``model_type`` whatever the tokenizer's
    files say (a ``qwen2`` model gets ``Qwen2Tokenizer``, which adds ``<|endoftext|>``), so the
    tokenizer is loaded once next to the config and saved as loaded, the way a real checkpoint
    ships a tokenizer of its own class; the vocabulary is sized to it.
    """
    config_class, kwargs = ARCHITECTURES[name]
    config = getattr(transformers, config_class)(**kwargs(), **_common(tokenizer))
    assert config.model_type == name
    config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    own = transformers.AutoTokenizer.from_pretrained(path)
    own.save_pretrained(path)
    config.vocab_size = len(own)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rows = [{"prompt": f"Sum {a} and {b}, then count the words of this sentence.\n", "completion": f" Answer: {a + b}"}
            for a in range(3) for b in range(3)]
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", rows),
        "test": write_jsonl(tmp_path / "test.jsonl", [{"prompt": r["prompt"], "answer": r["completion"][9:]}
                                                      for r in rows[:4]]),
        "general": write_jsonl(tmp_path / "general.jsonl",
                               [{"text": f"In the beginning was the word, and the word was with the model {i}."}
                                for i in range(4)]),
    }


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = Checkpoint(path)
    return {name: checkpoint.read(name) for name in checkpoint.tensors}


def _train(base: Path, data: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    assert main(["train", "--model", str(base), "--data", str(data), "--output", str(out), "--max-steps", "2",
                 "--batch-size", "4", "--learning-rate", "1e-2", "--logging-steps", "1", *extra]) == 0
    return _tensors(out)


def _adapted(name: str, suffixes: list[str]) -> bool:
    module = name.removesuffix(".weight").removesuffix(".bias")
    return any(module.endswith("." + s) for s in suffixes)


def _sees_past_its_window(model: torch.nn.Module, vocab: int) -> bool:
    """Whether the last position's logits change when the first token does (two layers see 2·(w−1) back)."""
    ids = torch.randint(3, vocab, (1, 4 * WINDOW))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1 - 3) % (vocab - 3) + 3
    with torch.no_grad():
        return not torch.allclose(model(input_ids=ids).logits[0, -1], model(input_ids=changed).logits[0, -1])


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_trains_merges_evaluates_and_generates(name: str, tokenizer, files: dict[str, Path],
                                                             tmp_path: Path) -> None:
    base = _build(name, tokenizer, tmp_path / "base")
    theta = _tensors(base)
    tied = transformers.AutoConfig.from_pretrained(base).tie_word_embeddings

    full = _train(base, files["train"], tmp_path / "full")
    assert full.keys() == theta.keys() and any(not torch.equal(full[k], theta[k]) for k in theta)

    lora = _train(base, files["train"], tmp_path / "lora", "--lora", "--lora-r", "4", "--lora-alpha", "8",
                  "--lora-target-modules", "attention,mlp")
    groups = MODULE_GROUPS[name]
    suffixes = [*groups["attention"], *groups["mlp"]]
    record = json.loads((tmp_path / "lora" / "forgetless.json").read_text())
    assert record["methods"]["lora"]["adapted_modules"] == sorted(suffixes)
    assert lora.keys() == theta.keys()
    moved = {k for k in theta if not torch.equal(lora[k], theta[k])}
    assert moved and all(_adapted(k, suffixes) for k in moved), sorted(moved - {k for k in moved if _adapted(k, suffixes)})

    assert main(["merge", "--models", str(base), str(tmp_path / "full"), "--alpha", "0.5",
                 "--output", str(tmp_path / "half")]) == 0
    half = _tensors(tmp_path / "half")
    assert half.keys() == theta.keys()
    for key in theta:
        assert torch.equal(half[key], 0.5 * theta[key] + 0.5 * full[key]), key
    assert main(["merge", "--models", str(base), str(tmp_path / "lora"), "--alpha", "0",
                 "--output", str(tmp_path / "zero")]) == 0
    zero = _tensors(tmp_path / "zero")
    assert zero.keys() == theta.keys() and all(torch.equal(zero[k], theta[k]) for k in theta)

    model = load_causal_lm(tmp_path / "half", torch.float32)
    same = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert same == tied and model.config.tie_word_embeddings == tied
    if name == "mistral":
        assert model.config.sliding_window == WINDOW and not _sees_past_its_window(model, len(tokenizer))
        model.config.sliding_window = None  # the same weights with full attention do see it
        assert _sees_past_its_window(model, len(tokenizer))

    report = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tmp_path / "half"), "--base", str(base), "--general", str(files["general"]),
                 "--no-cloze", "--domain", str(files["test"]), "--max-new-tokens", "8", "--resamples", "20",
                 "--no-progress", "--output", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["general"]["tokens"] > 0 and result["domain"]["n"] == 4
    assert "nats_per_token" in result["forgetting"] and "exact_match" in result["gain"]

    samples = tmp_path / "samples.jsonl"
    assert main(["generate", "--model", str(tmp_path / "lora"), "--output", str(samples), "--num-samples", "3",
                 "--max-new-tokens", "8"]) == 0
    drawn = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(drawn) == 3 and all(1 <= len(d["token_ids"]) <= 9 for d in drawn)
