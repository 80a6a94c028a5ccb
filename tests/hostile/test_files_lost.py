"""Class 1 of issue 34: no command may lose or replace a user's file. An output that is, holds or lies inside an
input is refused before any work, naming both paths; ``--overwrite`` replaces only what forgetless wrote."""

from __future__ import annotations

import json

import pytest

from tests.hostile.harness import Case, World, case, params, run_case, write_jsonl

K = "files-lost"


def _forgetless_output(world: World) -> None:
    """``out/`` as an earlier run left it (forgetless's marker in it)."""
    world["out"].mkdir()
    (world["out"] / "forgetless.json").write_text("{}")


def _link_to_model(world: World) -> None:
    (world.root / "link").symlink_to(world["model"])


def _earlier_slice(world: World) -> None:
    write_jsonl(world["outfile"], [{"text": "an earlier slice"}])


def _users_sidecar(world: World) -> None:
    """A file of the user's where generate would put its sidecar (``out.meta.json`` beside ``out.jsonl``)."""
    (world.root / "out.meta.json").write_text('{"mine": true}')


def _users_json(world: World) -> None:
    (world.root / "mine.json").write_text('{"model": "mine", "notes": "a JSON file of the user\'s"}')


def _fake_gguf(world: World) -> None:
    (world.root / "models").mkdir()
    (world.root / "models" / "m.gguf").write_bytes(b"GGUF" + bytes(60))


def _users_probe_file(world: World) -> None:
    write_jsonl(world["mine"] / "arithmetic.jsonl", [{"mine": 1}])


def _train_config_over_its_folder(world: World) -> None:
    """A train config whose output is the folder the config (and the data) lives in."""
    (world.root / "c.yaml").write_text(json.dumps({"model": str(world["model"]), "data": str(world["data"]),
                                                   "output": str(world.root), "overwrite": True}))


def _study_output_is_data_dir(world: World) -> None:
    config = world.root / "s2.yaml"
    text = world["study"].read_text().replace(str(world.root / "study-out"), str(world.root))
    config.write_text(text)


T = "train --model {model} --data {data} --max-steps 1 --batch-size 2 --output"
M = "merge --models {model} {model2} --alpha 0.5 --output"
G = "generate --corpus {corpus} --num-samples 2 --output"
E = "eval --model {model} --domain {data} --no-cloze --output"

CASES: list[Case] = [
    case("train into the data's folder", K, f"{T} {{root}} --overwrite", "contains the --model"),
    case("train over the data file", K, f"{T} {{data}} --overwrite", "is the --data"),
    case("train over its model", K, f"{T} {{model}} --overwrite", "is the --model"),
    case("train inside its model", K, f"{T} {{model}}/ft", "lies inside the --model"),
    case("train into sub/.. of the data's folder", K, f"{T} {{root}}/sub/.. --overwrite", "contains the --model"),
    case("train over a user's file", K, f"{T} {{notes}} --overwrite", "is a file"),
    case("train over a user's folder", K, f"{T} {{mine}} --overwrite", "replaces only a directory forgetless wrote"),
    case("train over its own output without --overwrite", K, f"{T} {{out}}", "already exists; pass --overwrite",
         _forgetless_output),
    case("train over a link to its model", K, f"{T} {{root}}/link --overwrite", "is the --model", _link_to_model),
    case("train config writing over its own folder", K, "train --config {root}/c.yaml", "contains the --model",
         _train_config_over_its_folder),
    case("train over the config file", K, "train --config {train_yaml} --output {train_yaml} --overwrite",
         "train.yaml: is a file; --overwrite replaces only a directory forgetless wrote"),
    case("train into the corpus of its replay", K,
         ["train", "--model", "{model}", "--data", "{data}", "--output", "{corpus}", "--overwrite", "--replay",
          '{{"data": "corpus", "ratio": 0.5}}'], "is a file"),
    case("train into the filesystem root", K, f"{T} / --overwrite", "root"),
    case("merge over an input", K, f"{M} {{model}} --overwrite", "is the --models"),
    case("merge inside an input", K, f"{M} {{model2}}/merged", "lies inside the --models"),
    case("merge into the inputs' folder", K, f"{M} {{root}} --overwrite", "contains the --models"),
    case("merge over a user's folder", K, f"{M} {{mine}} --overwrite", "replaces only a directory forgetless wrote"),
    case("merge over a user's file", K, f"{M} {{notes}} --overwrite", "is a file"),
    case("merge over its own output without --overwrite", K, f"{M} {{out}}", "already exists; pass --overwrite",
         _forgetless_output),
    case("merge over a link to an input", K, f"{M} {{root}}/link --overwrite", "is the --models", _link_to_model),
    case("merge sweep curve over its general text", K,
         "merge --models {model} {model2} --sweep --alphas 0 1 --general {corpus} --curve {corpus} --output {out}",
         "--curve"),
    case("generate over its corpus", K, f"{G} {{corpus}} --overwrite", "is the --corpus"),
    case("generate over its corpus without --overwrite", K, f"{G} {{corpus}}", "is the --corpus"),
    case("generate over its prompts", K,
         "generate --model {model} --prompts {data} --num-samples 2 --output {data} --overwrite", "is the --prompts"),
    case("generate over an earlier slice without --overwrite", K, f"{G} {{outfile}}",
         "already exists; pass --overwrite", _earlier_slice),
    case("generate over a user's file without --overwrite", K, f"{G} {{notes}}", "already exists; pass --overwrite"),
    case("generate into a folder", K, f"{G} {{mine}} --overwrite", "is a directory"),
    case("generate over a user's sidecar", K, f"{G} {{outfile}}", "out.meta.json: already exists; pass --overwrite",
         _users_sidecar),
    case("generate inside its model", K, "generate --model {model} --num-samples 1 --output {model}/s.jsonl",
         "lies inside the --model"),
    case("eval over its domain data", K, f"{E} {{data}}", "is the --domain"),
    case("eval into its model", K, f"{E} {{model}}", "is the --model"),
    case("eval inside its model", K, f"{E} {{model}}/config.json", "lies inside the --model"),
    case("eval over its general text", K, "eval --model {model} --general {corpus} --no-cloze --output {corpus}",
         "is the --general"),
    case("eval over its base", K, "eval --model {model} --base {model2} --domain {data} --no-cloze --output {model2}",
         "is the --base"),
    case("eval over a user's file", K, f"{E} {{notes}}", "notes.txt: already exists and is not an earlier result "
         "of forgetless eval"),
    case("eval over a user's JSON", K, f"{E} {{root}}/mine.json", "is not an earlier result of forgetless eval",
         _users_json),
    case("eval into a folder", K, f"{E} {{mine}}", "mine: is a directory; expected the path of a JSON file"),
    case("kl-estimate over a user's file", K, "kl-estimate --model {model} --base {model2} --samples {samples} "
         "--output {notes}", "notes.txt: already exists and is not an earlier result of forgetless kl-estimate"),
    case("merge sweep curve over a user's file", K, "merge --models {model} {model2} --sweep --alphas 0 1 --general "
         "{corpus} --curve {notes}", "--curve {notes}: already exists and is not an earlier result"),
    case("kl-estimate over its samples", K, "kl-estimate --model {model} --base {model2} --samples {samples} "
         "--output {samples}", "is the --samples"),
    case("kl-estimate inside its base", K, "kl-estimate --model {model} --base {model2} --samples {samples} "
         "--output {model2}/kl.json", "lies inside the --base"),
    case("study over its config's folder", K, "study {study} --output {root}", "contains the config"),
    case("study into its base model", K, "study {study} --output {model}", "is the base_model"),
    case("study config writing over its data", K, "study {root}/s2.yaml", "contains the config",
         _study_output_is_data_dir),
    case("study into a user's folder", K, "study {study} --output {mine} --check",
         "output {mine}: holds notes.txt and no cells/ of a study forgetless wrote"),
    case("study into a user's file", K, "study {study} --output {notes} --dry-run", "output {notes}: is a file"),
    case("convert-gguf over its file", K, "convert-gguf {root}/models/m.gguf --output {root}/models/m.gguf",
         "is the GGUF file", _fake_gguf),
    case("convert-gguf into the file's folder", K, "convert-gguf {root}/models/m.gguf --output {root}/models "
         "--overwrite", "contains the GGUF file", _fake_gguf),
    case("convert-gguf over a user's folder", K, "convert-gguf {root}/models/m.gguf --output {mine} --overwrite",
         "replaces only a directory forgetless wrote", _fake_gguf),
    case("probes over a user's file of the same name", K, "probes --output {mine} --probes arithmetic",
         "mine: already holds arithmetic.jsonl, not written by `forgetless probes`", _users_probe_file),
    case("probes into a file", K, "probes --output {notes}", "notes.txt: is a file; expected a directory"),
    case("theory into a file", K, "theory tilting --output {notes}", "notes.txt"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_files_lost(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, world, capsys)
