"""Refusals outside issue 34's five classes that users try all the same: unknown names and flags, flags of another
rule, missing files, records of the wrong shape, YAML that asks to build Python objects, models that do not belong
together. Each is one line naming what was wrong and exit 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEXT, make_model
from tests.hostile.harness import Case, Setup, World, case, params, run_case, write, write_jsonl

K = "other"
T = "train --model {model} --data {data} --output {out}"
M = "merge --models {model} {model2} --output {out}"


def _other_vocab(world: World) -> None:
    """``model2`` replaced by a model over another tokenizer (a smaller vocabulary)."""
    from forgetless.testbed.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(TEXT, vocab_size=300, out_dir=world.root / "tok")
    for file in world["model2"].iterdir():
        file.unlink()
    make_model(tokenizer).save_pretrained(world["model2"])
    tokenizer.save_pretrained(world["model2"])


def _records(rows: list[object]) -> Setup:
    def setup(world: World) -> None:
        write_jsonl(world.root / "r.jsonl", rows)
    return setup


R = "train --model {model} --data {root}/r.jsonl --output {out}"
CASES: list[Case] = [
    case("an unknown subcommand", K, "finetune --model {model}", "invalid choice: 'finetune'"),
    case("an unknown flag", K, f"{T} --learningrate 1e-4", "unrecognized arguments: --learningrate"),
    case("no subcommand", K, [], "the following arguments are required: command"),
    case("generate without --output", K, "generate --model {model}", "the following arguments are required: --output"),
    case("a choice that is not one", K, f"{T} --precision fp8", "argument --precision: invalid choice: 'fp8'"),
    case("a number that is not one", K, f"{T} --batch-size two", "argument --batch-size"),
    case("an unknown method", K, f"{T} --method sft++", "sft++"),
    case("an unknown scheduler", K, f"{T} --lr-scheduler zigzag", "key 'lr_scheduler': Value error, unknown scheduler"),
    case("an abbreviated flag", K, f"{T} --lr 1e-4", "unrecognized arguments: --lr 1e-4"),
    case("an unknown regularizer", K, [*T.split(), "--regularizers", '{{"ewc": {{"weight": 1}}}}'], "ewc"),
    case("a method parameter of another method", K, [*T.split(), "--method", "dft", "--method-params",
                                                     '{{"tau": 0.5}}'], "tau"),
    case("another rule's flag", K, f"{M} --rule average --lambdas 1", "--lambdas"),
    case("a rule without its required flag", K, f"{M} --rule interpolate", "alpha"),
    case("a merge of one model", K, "merge --models {model} --alpha 0.5 --output {out}", "model"),
    case("--config-from past the inputs", K, f"{M} --alpha 0.5 --config-from 5", "config_from"),
    case("a shard size in no unit", K, f"{M} --alpha 0.5 --shard-size 1XB", "1XB"),
    case("a merge of models over other vocabularies", K, f"{M} --alpha 0.5", "model2", _other_vocab, slow=True),
    case("a negative seed", K, f"{T} --seed -1", "key 'seed': Input should be greater than or equal to 0"),
    case("a seed past 2**32", K, f"{T} --seed 4294967296", "key 'seed': Input should be less than or equal to 4294967295"),
    case("learning rates with a NaN", K, f"{T} --learning-rates nan 1e-3", "key 'learning_rates.0': Input should be a "
         "finite number"),
    case("an unknown testbed preset", K, "testbed path --preset huge", "huge"),
    case("an unknown probe", K, "probes --output {out} --probes riddles", "riddles"),
    case("an unknown answer extractor", K, "eval --model {model} --domain {data} --no-cloze --answer-extraction "
         "telepathy", "telepathy"),
    case("an answer regex that does not compile", K, "eval --model {model} --domain {data} --no-cloze "
         "--answer-extraction regex:(", "regex"),
    case("a data file that is not there", K, "train --model {model} --data {root}/nope.jsonl --output {out}",
         "nope.jsonl"),
    case("a model directory that is not there", K, "eval --model {root}/nope --domain {data} --no-cloze",
         "nope: no such model directory"),
    case("a record that is a list", K, R, "r.jsonl, line 1: expected a JSON object", _records([[1, 2]])),
    case("a record with neither text nor prompt", K, R, "r.jsonl, line 1", _records([{"question": "q"}])),
    case("a record with a number for a prompt", K, R, "r.jsonl, line 1, field 'prompt': expected a string, got int",
         _records([{"prompt": 3, "completion": " x"}])),
    case("a message of an unknown role", K, R, "r.jsonl, line 1, field 'messages[0].role'",
         _records([{"messages": [{"role": "wizard", "content": "x"}]}])),
    case("a data file that is not UTF-8", K, R, "r.jsonl, line 1: not valid UTF-8",
         write("r.jsonl", b'{"text": "caf\xe9"}\n')),
    case("a .parquet file of garbage", K, "train --model {model} --data {root}/d.parquet --output {out}", "d.parquet",
         write("d.parquet", b"PAR1 but not really")),
    case("a .json data file holding an object", K, "train --model {model} --data {root}/d.json --output {out}",
         "d.json", write("d.json", json.dumps({"prompt": "a", "completion": "b"}))),
    case("a config that is a list", K, "train --config {root}/c.yaml", "c.yaml: expected a mapping",
         write("c.yaml", "- a\n- b\n")),
    case("a config with an unknown key", K, "train --config {root}/c.yaml", "lerning_rate",
         write("c.yaml", "lerning_rate: 0.1\n")),
    case("a config asking for a Python object", K, "train --config {root}/c.yaml", "c.yaml: not valid YAML",
         write("c.yaml", "learning_rate: !!python/object/apply:os.system ['touch pwned']\n")),
    case("a study config asking for a Python object", K, "study {root}/c.yaml --check", "c.yaml: not valid YAML",
         write("c.yaml", "output: !!python/object/apply:os.getcwd []\n")),
    case("a study config with an unknown key", K, "study {root}/c.yaml --check", "c.yaml",
         write("c.yaml", "base_modle: x\n")),
    case("kl-estimate without a base to compare to", K, "kl-estimate --model {model} --samples {samples}",
         "--base is required"),
    case("convert-gguf of a file that is not GGUF", K, "convert-gguf {notes} --output {out}", "notes.txt"),
    case("convert-gguf of a GGUF cut short", K, "convert-gguf {root}/m.gguf --output {out}", "m.gguf",
         write("m.gguf", b"GGUF\x03\x00\x00\x00")),
    case("convert-gguf of nothing", K, "convert-gguf {root}/none.gguf --output {out}", "none.gguf"),
    case("an accelerate config that is not there", K, f"{T} --launcher accelerate --accelerate-config "
         "{root}/none.yaml", "none.yaml"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_other(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, world, capsys)
    assert not (world.root.parent / "pwned").exists()  # the YAML tag ran nothing
