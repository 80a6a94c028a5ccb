"""Class 5 of issue 34: no input or signal ends in a Python traceback. Files of the wrong shape, lone surrogates,
JSON nested past Python's recursion limit, a chat template that tries to escape its sandbox, a garbled study, and
Ctrl-C (exit 130, nothing half-written) each end in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.hostile.harness import Case, Setup, World, case, params, run_case, write, write_jsonl

K = "traceback"
DEEP = "[" * 20_000 + "]" * 20_000
T = "train --model {model} --data {data} --output {out}"
EVAL2 = "eval --model {model2} --domain {data} --no-cloze"
MERGE2 = "merge --models {model} {model2} --alpha 0.5 --output {out}"


def edit_json(name: str, change: dict[str, object]) -> Setup:
    """A setup updating the JSON object in the world's file ``name`` with ``change``."""
    def setup(world: World) -> None:
        path = world.root / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    return setup


def _chat_data(world: World) -> None:
    write_jsonl(world.root / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                          {"role": "assistant", "content": "hello"}]}])


def template(text: str) -> Setup:
    """A setup giving ``model2`` the chat template ``text``, and a chat data file."""
    def setup(world: World) -> None:
        _chat_data(world)
        (world["model2"] / "chat_template.jinja").write_text(text)
    return setup


ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m.content }}{% endfor %}"


def _results(lines: str) -> Setup:
    """A setup writing ``done/results.jsonl`` with ``lines`` (a study that ended, or seemed to)."""
    def setup(world: World) -> None:
        (world.root / "done").mkdir()
        (world.root / "done" / "results.jsonl").write_text(lines)
    return setup


def _index_escape(world: World) -> None:
    """A sharded checkpoint whose index sends a shard outside the model directory."""
    (world.root / "elsewhere.safetensors").write_bytes((world["model2"] / "model.safetensors").read_bytes())
    names = json.loads((world["model2"] / "model.safetensors").read_bytes()[8:8 + int.from_bytes(
        (world["model2"] / "model.safetensors").read_bytes()[:8], "little")])
    (world["model2"] / "model.safetensors").unlink()
    weight_map = {n: "../elsewhere.safetensors" for n in names if n != "__metadata__"}
    (world["model2"] / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _pickled_only(world: World) -> None:
    (world["model2"] / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, world["model2"] / "pytorch_model.bin")


def _adapter_without_base(world: World) -> None:
    (world.root / "adapter").mkdir()
    (world.root / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8}))


def _remote_code(world: World) -> None:
    edit_json("model2/config.json", {"model_type": "custom-arch", "auto_map": {
        "AutoConfig": "modeling.C", "AutoModelForCausalLM": "modeling.M"}})(world)
    (world["model2"] / "modeling.py").write_text("raise SystemExit('remote code ran')\n")


CASES: list[Case] = [
    # lone surrogates: escaped in JSON they decode to text no tokenizer can take
    case("surrogate in a prompt", K, "train --model {model} --data {root}/s.jsonl --output {out}",
         "s.jsonl, line 1, field 'prompt': holds a lone surrogate (U+D800)",
         write("s.jsonl", '{"prompt": "a\\ud800", "completion": " b"}\n')),
    case("surrogate in a completion", K, "train --model {model} --data {root}/s.jsonl --output {out}",
         "field 'completion': holds a lone surrogate (U+DC00)",
         write("s.jsonl", '{"prompt": "a", "completion": "\\udc00"}\n')),
    case("surrogate in a message", K, "train --model {model} --data {root}/s.jsonl --output {out}",
         "holds a lone surrogate", write("s.jsonl", '{"messages": [{"role": "user", "content": "\\ud800"}, '
                                                   '{"role": "assistant", "content": "x"}]}\n')),
    case("surrogate in general text", K, "eval --model {model} --general {root}/s.jsonl --no-cloze",
         "s.jsonl, line 1, field 'text': holds a lone surrogate", write("s.jsonl", '{"text": "\\udfff"}\n')),
    case("surrogate in a corpus", K, "generate --corpus {root}/s.jsonl --output {outfile}",
         "s.jsonl, line 1, field 'text': holds a lone surrogate", write("s.jsonl", '{"text": "\\udfff"}\n')),
    case("surrogate in an eval prompt", K, "eval --model {model} --domain {root}/s.jsonl --no-cloze",
         "s.jsonl, line 1, field 'prompt': holds a lone surrogate",
         write("s.jsonl", '{"prompt": "\\ud801", "completion": " 1", "answer": "1"}\n')),
    # a model's own files, of the wrong shape
    case("tokenizer.json a list", K, EVAL2, "model2/tokenizer.json: expected a JSON object, got a JSON list",
         write("model2/tokenizer.json", "[1, 2]"), slow=True),
    case("tokenizer.json without a model", K, EVAL2, "model2/tokenizer.json: expected a tokenizer with a 'model'",
         write("model2/tokenizer.json", '{"model": 5}'), slow=True),
    case("tokenizer.json nested too deeply", K, EVAL2, "tokenizer.json: expected a JSON object (JSON nested too",
         write("model2/tokenizer.json", '{"a": ' + DEEP + "}"), slow=True),
    case("tokenizer.json not UTF-8", K, EVAL2, "tokenizer.json: expected a JSON object",
         write("model2/tokenizer.json", b'{"model": "\xff"}'), slow=True),
    case("tokenizer.json a list, in a merge", K, MERGE2, "model2/tokenizer.json: expected a tokenizer",
         write("model2/tokenizer.json", "[1, 2]"), slow=True),
    case("config.json a list", K, EVAL2, "model2/config.json: expected a JSON object",
         write("model2/config.json", "[]"), slow=True),
    case("config.json with a string for a size", K, EVAL2, "config.json: Validation error for field 'hidden_size'",
         edit_json("model2/config.json", {"hidden_size": "big"}), slow=True),
    case("config.json with a list for a size", K, EVAL2, "model2", edit_json("model2/config.json",
                                                                            {"num_attention_heads": [4]}), slow=True),
    case("config.json with minus one layer", K, EVAL2, "tensor(s) that config.json's LlamaForCausalLM has no place",
         edit_json("model2/config.json", {"num_hidden_layers": -1}), slow=True),
    case("config.json of another width", K, EVAL2, "expects [384, 48]",
         edit_json("model2/config.json", {"hidden_size": 48}), slow=True),
    case("config.json nested too deeply", K, EVAL2, "config.json: expected a JSON object (JSON nested too deeply",
         write("model2/config.json", '{"a": ' + DEEP + "}"), slow=True),
    case("config.json nested too deeply, in a merge", K, MERGE2, "config.json: not valid JSON (nested too deeply",
         write("model2/config.json", '{"a": ' + DEEP + "}"), slow=True),
    case("a weight index sending a shard outside", K, EVAL2,
         "model.safetensors.index.json: shard ../elsewhere.safetensors lies outside", _index_escape),
    case("a weight index sending a shard outside, in a merge", K, MERGE2,
         "model.safetensors.index.json: shard ../elsewhere.safetensors lies outside", _index_escape),
    case("a checkpoint of pickled weights only", K, EVAL2, "holds only pickled weights (pytorch_model.bin)",
         _pickled_only),
    case("a model that needs remote code", K, EVAL2, "the model needs its own Python code", _remote_code,
         slow=True),
    case("an adapter that names no base", K, "eval --model {root}/adapter --domain {data} --no-cloze",
         "base_model_name_or_path", _adapter_without_base),
    case("a safetensors file of garbage", K, EVAL2, "model.safetensors: not a complete safetensors file",
         write("model2/model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")),
    # forgetless.json, which kl-estimate reads for the base
    case("forgetless.json without its keys", K, "kl-estimate --model {model} --samples {samples}",
         "model/forgetless.json: expected 'resolved': {{'model': ...}} naming the base",
         write("model/forgetless.json", '{"note": 1}')),
    case("forgetless.json a list", K, "kl-estimate --model {model} --samples {samples}",
         "forgetless.json: expected a JSON object, got a JSON list", write("model/forgetless.json", "[1]")),
    case("forgetless.json nested too deeply", K, "kl-estimate --model {model} --samples {samples}",
         "forgetless.json: expected a JSON object (JSON nested too deeply",
         write("model/forgetless.json", '{"resolved": ' + DEEP + "}")),
    # chat templates, rendered in jinja2's sandbox
    case("a chat template escaping its sandbox, in training", K,
         "train --model {model2} --data {root}/chat.jsonl --output {out}",
         "chat.jsonl, line 1, field 'messages': the chat template of", template(ESCAPE), slow=True),
    case("a chat template escaping its sandbox, in generation", K,
         "generate --model {model2} --prompt chat --num-samples 1 --output {outfile}",
         "refused to render an empty user turn (SecurityError", template(ESCAPE), slow=True),
    case("a chat template that raises", K, "train --model {model2} --data {root}/chat.jsonl --output {out}",
         "TemplateError", template("{{ raise_exception('no chat here') }}"), slow=True),
    case("a chat template that does not parse", K, "train --model {model2} --data {root}/chat.jsonl --output {out}",
         "chat.jsonl, line 1, field 'messages'", template("{% for m in messages %}"), slow=True),
    # JSON nested past the recursion limit, wherever JSON is read
    case("--method-params nested too deeply", K, [*T.split(), "--method-params", '{{"a": ' + DEEP + "}}"],
         "argument --method-params: expected a JSON object such as '{{\"key\": 0.1}}', got JSON nested too deeply"),
    case("--regularizers nested too deeply", K, [*T.split(), "--regularizers", '{{"a": ' + DEEP + "}}"],
         "argument --regularizers: expected a JSON object"),
    case("--replay nested too deeply", K, [*T.split(), "--replay", '{{"data": ' + DEEP + "}}"],
         "JSON nested too deeply"),
    case("--fields nested too deeply", K, [*T.split(), "--fields", '{{"prompt": ' + DEEP + "}}"], "--fields"),
    case("a train config nested too deeply", K, "train --config {root}/c.yaml", "c.yaml: not valid YAML (nested",
         write("c.yaml", "learning_rate: " + DEEP)),
    case("a merge config nested too deeply", K, "merge --config {root}/c.yaml", "c.yaml: not valid YAML (nested",
         write("c.yaml", "alpha: " + DEEP)),
    case("a study config nested too deeply", K, "study {root}/c.yaml", "c.yaml: not valid YAML (nested",
         write("c.yaml", "methods: " + DEEP)),
    case("a JSON config nested too deeply", K, "train --config {root}/c.json", "c.json: not valid YAML (nested",
         write("c.json", '{"learning_rate": ' + DEEP + "}")),
    case("a data line nested too deeply", K, "train --model {model} --data {root}/d.jsonl --output {out}",
         "d.jsonl, line 1: expected a JSON object, got JSON nested too deeply",
         write("d.jsonl", '{"prompt": "a", "completion": ' + DEEP + "}\n")),
    case("a .json data file nested too deeply", K, "train --model {model} --data {root}/d.json --output {out}",
         "d.json: expected a JSON list of objects, got JSON nested too deeply", write("d.json", DEEP)),
    case("a samples sidecar nested too deeply", K, "kl-estimate --model {model} --base {model2} --samples {samples}",
         "samples.meta.json", write("samples.meta.json", DEEP)),
    case("a results line nested too deeply", K, "report --config {study} {root}/done",
         "results.jsonl, line 1: expected a study result row, got invalid JSON (nested too deeply)",
         _results(DEEP + "\n")),
    # a garbled study
    case("report on a garbled results.jsonl", K, "report --config {study} {root}/done",
         "results.jsonl, line 2: expected a study result row", _results('{"id": "base", "kind": "base"}\nnot json\n')),
    case("report where no study ran", K, "report --config {study} {mine}",
         "results.jsonl: no such file; expected a study directory"),
    case("report on rows without their keys", K, "report --config {study} {root}/done", "results.jsonl",
         _results('{"foo": 1}\n{"bar": 2}\n')),
    case("report on a row of the wrong types", K, "report --config {study} {root}/done", "results.jsonl",
         _results('{"id": 3, "kind": ["base"], "general_loss": "low"}\n')),
]

# Ctrl-C at three depths: while a model loads, while a merge writes its tensors, while a run trains.
INTERRUPTED: dict[str, tuple[Case, str]] = {
    c.id: (c, target) for c, target in [
        (case("Ctrl-C while eval loads its model", K, "eval --model {model} --domain {data} --no-cloze",
              "forgetless: interrupted", code=130, slow=True),
         "transformers.AutoModelForCausalLM.from_pretrained"),
        (case("Ctrl-C while merge writes", K, MERGE2, "forgetless: interrupted", code=130, slow=True),
         "forgetless.merging.engine.combine"),
        (case("Ctrl-C while training", K, f"{T} --max-steps 4 --batch-size 2 --save-steps 1",
              "forgetless: interrupted", code=130, slow=True),
         "transformers.Trainer.training_step"),
        (case("Ctrl-C while generating", K, "generate --model {model} --num-samples 2 --output {outfile}",
              "forgetless: interrupted", code=130, slow=True),
         "forgetless.replay.make_data.generate_context_free"),
    ]
}


@pytest.mark.parametrize("case", params(CASES))
def test_tracebacks(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, world, capsys)


@pytest.mark.parametrize("case", params([c for c, _ in INTERRUPTED.values()]))
def test_ctrl_c(case: Case, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(INTERRUPTED[case.id][1], interrupt)
    run_case(case, world, capsys)
    assert not Path(world["out"]).exists()
