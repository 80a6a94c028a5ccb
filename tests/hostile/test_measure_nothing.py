"""Class 3 of issue 34: a measurement of nothing is refused up front, naming the flag or the file: zero or negative
counts, zero tokens, NaN temperatures, confidence levels outside (0, 1), empty or answerless data."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.hostile.harness import Case, Setup, World, case, params, run_case, write_jsonl

K = "measure-nothing"
E = "eval --model {model} --domain {data} --no-cloze"
G = "generate --model {model} --output {outfile}"
KL = "kl-estimate --model {model} --base {model2} --samples {samples}"
T = "train --model {model} --data {data} --output {out}"
M = "merge --models {model} {model2} --output {out}"
# Three models, so that the softmax weighs two candidates and the examples are read (with two, the base alone is one).
C = "merge --models {model} {model2} {model2} --output {out} --rule cocktail"


def _empty(name: str, text: str = "") -> Setup:
    """A setup writing the user's file ``name`` with ``text`` (empty by default)."""
    def setup(world: World) -> None:
        (world.root / name).write_text(text)
    return setup


def _study(change: dict[str, object], files: dict[str, str] | None = None) -> Setup:
    """A setup writing ``s2.yaml``: the world's study config with ``change`` applied (``{root}`` in a string value
    is the world's folder), and the user's ``files`` (``{name: text}``) beside it."""
    def setup(world: World) -> None:
        for name, text in (files or {}).items():
            (world.root / name).write_text(text)
        config = yaml.safe_load(world["study"].read_text())
        for key, value in change.items():
            section, _, field = key.partition(".")
            target = config.setdefault(section, {}) if field else config
            target[field or section] = value.format(**world.paths) if isinstance(value, str) else value
        (world.root / "s2.yaml").write_text(yaml.safe_dump(config))
    return setup


def _samples_without_ids(world: World) -> None:
    write_jsonl(world["samples"], [{"text": "no ids here"}])


def _bad_sidecar(world: World) -> None:
    (world.root / "samples.meta.json").write_text(json.dumps({"prompt_ids": "BOS"}))


def _no_sidecar(world: World) -> None:
    (world.root / "samples.meta.json").unlink()


def _answerless(world: World) -> None:
    write_jsonl(world.root / "d2.jsonl", [{"text": "no prompt, no answer"}])


CASES: list[Case] = [
    case("eval --limit 0", K, f"{E} --limit 0", "--limit: Input should be greater than 0"),
    case("eval --limit -1", K, f"{E} --limit -1", "--limit: Input should be greater than 0"),
    case("eval --max-new-tokens 0", K, f"{E} --max-new-tokens 0", "--max-new-tokens: Input should be greater than 0"),
    case("eval --max-new-tokens -3", K, f"{E} --max-new-tokens -3", "--max-new-tokens: Input should be greater than 0"),
    case("eval --resamples 0", K, f"{E} --resamples 0", "--resamples: Input should be greater than 0"),
    case("eval --general-limit 0", K, "eval --model {model} --general {corpus} --general-limit 0",
         "--general-limit: Input should be greater than 0"),
    case("eval --confidence 0", K, f"{E} --confidence 0", "--confidence: Input should be greater than 0"),
    case("eval --confidence 1", K, f"{E} --confidence 1", "--confidence: Input should be less than 1"),
    case("eval --confidence nan", K, f"{E} --confidence nan", "--confidence: Input should be a finite number"),
    case("eval --batch-size 0", K, f"{E} --batch-size 0", "--batch-size: Input should be greater than 0"),
    case("eval --window 0", K, "eval --model {model} --general {corpus} --window 0", "--window"),
    case("eval --cloze-items 0", K, "eval --model {model} --general {corpus} --cloze-items 0", "--cloze-items"),
    case("eval --kl-limit 0", K, "eval --model {model} --kl-samples {samples} --kl-limit 0", "--kl-limit"),
    case("eval with nothing to measure", K, "eval --model {model} --no-cloze",
         "eval: nothing to measure; give --domain, --general, --choices or --kl-samples"),
    case("eval of an empty domain file", K, "eval --model {model} --domain {root}/empty.jsonl --no-cloze",
         "empty.jsonl", _empty("empty.jsonl")),
    case("eval of a domain file of blank lines", K, "eval --model {model} --domain {root}/blank.jsonl --no-cloze",
         "blank.jsonl", _empty("blank.jsonl", "\n  \n\n")),
    case("eval of a domain file without answers", K, "eval --model {model} --domain {root}/d2.jsonl --no-cloze",
         "d2.jsonl, line 1", _answerless),
    case("eval of an empty general file", K, "eval --model {model} --general {root}/empty.jsonl --no-cloze",
         "empty.jsonl", _empty("empty.jsonl")),
    case("generate --num-samples 0", K, f"{G} --num-samples 0", "--num-samples: Input should be greater than 0"),
    case("generate --num-samples -1", K, f"{G} --num-samples -1", "--num-samples: Input should be greater than 0"),
    case("generate --temperature nan", K, f"{G} --temperature nan", "--temperature: Input should be a finite number"),
    case("generate --temperature -1", K, f"{G} --temperature -1", "--temperature"),
    case("generate --temperature inf", K, f"{G} --temperature inf", "--temperature: Input should be a finite number"),
    case("generate --top-p 0", K, f"{G} --top-p 0", "--top-p"),
    case("generate --top-p 1.5", K, f"{G} --top-p 1.5", "--top-p"),
    case("generate --top-p nan", K, f"{G} --top-p nan", "--top-p: Input should be a finite number"),
    case("generate --max-new-tokens 0", K, f"{G} --max-new-tokens 0", "--max-new-tokens"),
    case("generate --batch-size 0", K, f"{G} --batch-size 0", "--batch-size: Input should be greater than 0"),
    case("generate --max-chars 0", K, "generate --corpus {corpus} --output {outfile} --max-chars 0", "--max-chars"),
    case("generate from an empty corpus", K, "generate --corpus {root}/empty.jsonl --output {outfile}",
         "empty.jsonl", _empty("empty.jsonl")),
    case("generate from empty prompts", K, "generate --model {model} --prompts {root}/empty.jsonl --output {outfile}",
         "empty.jsonl", _empty("empty.jsonl")),
    case("kl-estimate --limit 0", K, f"{KL} --limit 0", "--limit: Input should be greater than 0"),
    case("kl-estimate --limit -2", K, f"{KL} --limit -2", "--limit: Input should be greater than 0"),
    case("kl-estimate --batch-size 0", K, f"{KL} --batch-size 0", "--batch-size"),
    case("kl-estimate of samples without token ids", K, KL, "samples.jsonl, line 1, field 'token_ids'",
         _samples_without_ids),
    case("kl-estimate with a sidecar of the wrong shape", K, KL, "samples.meta.json, field 'prompt_ids'",
         _bad_sidecar),
    case("kl-estimate without its sidecar", K, KL, "samples.meta.json: missing", _no_sidecar),
    case("kl-estimate of an empty samples file", K, "kl-estimate --model {model} --base {model2} --samples "
         "{root}/empty.jsonl", "empty", _empty("empty.jsonl")),
    case("train --batch-size 0", K, f"{T} --batch-size 0", "batch_size"),
    case("train --grad-accum 0", K, f"{T} --grad-accum 0", "grad_accum"),
    case("train --max-length 0", K, f"{T} --max-length 0", "max_length"),
    case("train --epochs 0", K, f"{T} --epochs 0", "epochs"),
    case("train --logging-steps 0", K, f"{T} --logging-steps 0", "logging_steps"),
    case("train --save-steps -1", K, f"{T} --save-steps -1", "save_steps"),
    case("train --max-steps 0", K, f"{T} --max-steps 0", "expected a positive number of steps, or -1"),
    case("train on an empty file", K, "train --model {model} --data {root}/empty.jsonl --output {out}",
         "empty.jsonl", _empty("empty.jsonl")),
    case("train on a JSON file holding an empty list", K, "train --model {model} --data {root}/e.json --output {out}",
         "e.json", _empty("e.json", "[]")),
    case("train on records with empty completions", K, "train --model {model} --data {root}/d2.jsonl --output {out}",
         "d2.jsonl, line 1, field 'completion'", _empty("d2.jsonl", '{"prompt": "a", "completion": ""}\n')),
    case("merge --general-limit 0", K, f"{M} --sweep --alphas 0 1 --general {{corpus}} --general-limit 0",
         "general_limit"),
    case("merge --domain-limit 0", K, f"{M} --sweep --alphas 0 1 --domain {{data}} --domain-limit 0", "domain_limit"),
    case("merge --num-examples 0", K, f"{M} --rule cocktail --examples {{data}} --num-examples 0", "num_examples"),
    case("merge --alphas nan", K, f"{M} --sweep --alphas nan --general {{corpus}}", "alphas"),
    case("merge --alphas 1.5", K, "merge --models {model} {model2} --sweep --alphas 0 1.5 --general {corpus}", "1.5"),
    case("merge --shard-size 0", K, f"{M} --alpha 0.5 --shard-size 0", "shard"),
    case("merge --shard-size abc", K, f"{M} --alpha 0.5 --shard-size abc", "abc"),
    case("merge sweep with nothing to measure", K, f"{M} --sweep --alphas 0 1", "sweep"),
    case("merge cocktail over empty examples", K, f"{C} --examples {{root}}/empty.jsonl", "empty.jsonl",
         _empty("empty.jsonl"), slow=True),
    case("merge cocktail over examples that are one JSON object", K, f"{C} --examples {{root}}/obj.json",
         "obj.json", _empty("obj.json", '{"a": [[1]]}'), slow=True),
    case("study without methods", K, "study {root}/s2.yaml --check", "methods", _study({"methods": []})),
    case("study with no learning rates", K, "study {root}/s2.yaml --check", "learning_rates",
         _study({"methods": [{"name": "sft", "learning_rates": []}]})),
    case("study with a negative second seed", K, "study {root}/s2.yaml --check", "key 'seeds.1'",
         _study({"seeds": [0, -1]})),
    case("study --workers 0", K, "study {study} --workers 0", "--workers"),
    case("study --retries -1", K, "study {study} --retries -1", "--retries"),
    case("study over an empty train file", K, "study {root}/s2.yaml --dry-run --no-timing", "empty.jsonl",
         _study({"data.train": "{root}/empty.jsonl"}, {"empty.jsonl": ""})),
    case("theory overadaptation --n 0", K, "theory overadaptation --n 0 --output {out}", "n"),
    case("theory overadaptation --n past --d", K, "theory overadaptation --d 10 --n 20 --output {out}",
         "n (20) must be smaller than d (10)"),
    case("theory overadaptation --alpha-points 0", K, "theory overadaptation --alpha-points 0 --output {out}",
         "--alpha-points: Input should be greater than 2"),
    case("theory tilting --vocab 0", K, "theory tilting --vocab 0 --output {out}", "vocab"),
    case("theory tilting --lambda-points 0", K, "theory tilting --lambda-points 0 --output {out}",
         "--lambda-points: Input should be greater than 10"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_measure_nothing(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, world, capsys)
