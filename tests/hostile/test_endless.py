"""Class 4 of issue 34: an input that never ends (a FIFO nobody writes to, a link to ``/dev/zero``, a YAML alias
bomb) is refused at once, naming it; only regular files, or links to them, are read. A hang fails the case (the
harness's deadline) instead of the run."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.hostile.harness import Case, Setup, World, case, params, run_case

K = "endless"
NOT_REGULAR = "is not a regular file"


def fifo(name: str) -> Setup:
    """A setup making the world's ``name`` (replacing a file of that name) a FIFO."""
    def setup(world: World) -> None:
        path = world.root / name
        if path.exists():
            path.unlink()
        os.mkfifo(path)
    return setup


def zero(name: str, device: str = "/dev/zero") -> Setup:
    """A setup making the world's ``name`` a link to ``device``."""
    def setup(world: World) -> None:
        path = world.root / name
        if path.exists():
            path.unlink()
        path.symlink_to(device)
    return setup


def _with_sidecar(name: str) -> Setup:
    """A setup making ``name.jsonl`` a FIFO beside a sidecar of the right shape, so that the samples are read."""
    def setup(world: World) -> None:
        fifo(f"{name}.jsonl")(world)
        (world.root / f"{name}.meta.json").write_text(world["samples"].with_name("samples.meta.json").read_text())
    return setup


def _study_data(name: str, maker: Setup) -> Setup:
    """A setup whose ``s2.yaml`` trains on ``name``, made by ``maker``."""
    def setup(world: World) -> None:
        maker(world)
        config = yaml.safe_load(world["study"].read_text())
        config["data"]["train"] = str(world.root / name)
        (world.root / "s2.yaml").write_text(yaml.safe_dump(config))
    return setup


def _alias_bomb(world: World) -> None:
    """The billion-laughs YAML: nine levels of nine aliases, 10^9 strings once expanded."""
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    (world.root / "bomb.yaml").write_text("\n".join(lines) + "\nlearning_rate: *a9\n")


E = "eval --model {model} --no-cloze"
CASES: list[Case] = [
    case("train --data a FIFO", K, "train --model {model} --data {root}/in.jsonl --output {out}", NOT_REGULAR,
         fifo("in.jsonl")),
    case("train --data a link to /dev/zero", K, "train --model {model} --data {root}/in.jsonl --output {out}",
         NOT_REGULAR, zero("in.jsonl")),
    case("train --data /dev/urandom", K, "train --model {model} --data {root}/in.jsonl --output {out}", NOT_REGULAR,
         zero("in.jsonl", "/dev/urandom")),
    case("train --data a .json FIFO", K, "train --model {model} --data {root}/in.json --output {out}", NOT_REGULAR,
         fifo("in.json")),
    case("train --data a .parquet FIFO", K, "train --model {model} --data {root}/in.parquet --output {out}",
         NOT_REGULAR, fifo("in.parquet")),
    case("train --config a FIFO", K, "train --config {root}/c.yaml", NOT_REGULAR, fifo("c.yaml")),
    case("train --config a link to /dev/zero", K, "train --config {root}/c.yaml", NOT_REGULAR, zero("c.yaml")),
    case("train --config an alias bomb", K, "train --config {root}/bomb.yaml", "bomb.yaml", _alias_bomb),
    case("train --replay data a FIFO", K, ["train", "--model", "{model}", "--data", "{data}", "--output", "{out}",
                                           "--replay", '{{"data": "{root}/r.jsonl", "ratio": 1}}'], NOT_REGULAR,
         fifo("r.jsonl")),
    case("merge --config a FIFO", K, "merge --config {root}/c.yaml", NOT_REGULAR, fifo("c.yaml")),
    case("merge --config an alias bomb", K, "merge --config {root}/bomb.yaml", "bomb.yaml", _alias_bomb),
    case("merge --examples a FIFO", K, "merge --models {model} {model2} {model2} --rule cocktail --examples "
         "{root}/ex.jsonl --output {out}", NOT_REGULAR, fifo("ex.jsonl"), slow=True),
    case("merge --general a FIFO", K, "merge --models {model} {model2} --sweep --alphas 0 1 --general "
         "{root}/g.jsonl", NOT_REGULAR, fifo("g.jsonl"), slow=True),
    case("study config a FIFO", K, "study {root}/s.yaml", NOT_REGULAR, fifo("s.yaml")),
    case("study config a link to /dev/zero", K, "study {root}/s.yaml --check", NOT_REGULAR, zero("s.yaml")),
    case("study config an alias bomb", K, "study {root}/bomb.yaml --check", "bomb.yaml", _alias_bomb),
    case("study --dry-run over a FIFO", K, "study {root}/s2.yaml --dry-run --no-timing", NOT_REGULAR,
         _study_data("in.jsonl", fifo("in.jsonl"))),
    case("study --check over a link to /dev/zero", K, "study {root}/s2.yaml --dry-run --no-timing", NOT_REGULAR,
         _study_data("in.jsonl", zero("in.jsonl"))),
    case("report --config a FIFO", K, "report --config {root}/s.yaml {root}", NOT_REGULAR, fifo("s.yaml")),
    case("eval --domain a FIFO", K, f"{E} --domain {{root}}/in.jsonl", NOT_REGULAR, fifo("in.jsonl")),
    case("eval --general a FIFO", K, f"{E} --general {{root}}/in.jsonl", NOT_REGULAR, fifo("in.jsonl")),
    case("eval --choices a FIFO", K, f"{E} --choices {{root}}/in.jsonl", NOT_REGULAR, fifo("in.jsonl")),
    case("eval --kl-samples a FIFO", K, f"{E} --kl-samples {{root}}/in.jsonl", NOT_REGULAR, _with_sidecar("in")),
    case("eval --domain a link to /dev/zero", K, f"{E} --domain {{root}}/in.jsonl", NOT_REGULAR, zero("in.jsonl")),
    case("generate --corpus a FIFO", K, "generate --corpus {root}/in.jsonl --output {outfile}", NOT_REGULAR,
         fifo("in.jsonl")),
    case("generate --corpus a link to /dev/zero", K, "generate --corpus {root}/in.jsonl --output {outfile}",
         NOT_REGULAR, zero("in.jsonl")),
    case("generate --prompts a FIFO", K, "generate --model {model} --prompts {root}/in.jsonl --output {outfile}",
         NOT_REGULAR, fifo("in.jsonl")),
    case("kl-estimate --samples a FIFO", K, "kl-estimate --model {model} --base {model2} --samples {root}/s.jsonl",
         NOT_REGULAR, _with_sidecar("s")),
    case("kl-estimate sidecar a FIFO", K, "kl-estimate --model {model} --base {model2} --samples {samples}",
         NOT_REGULAR, fifo("samples.meta.json")),
    case("kl-estimate forgetless.json a FIFO", K, "kl-estimate --model {model} --samples {samples}", NOT_REGULAR,
         fifo("model/forgetless.json")),
    case("convert-gguf of a FIFO", K, "convert-gguf {root}/m.gguf --output {out}", NOT_REGULAR, fifo("m.gguf")),
    case("convert-gguf of a link to /dev/zero", K, "convert-gguf {root}/m.gguf --output {out}", NOT_REGULAR,
         zero("m.gguf")),
    case("a model whose config.json is a FIFO", K, "eval --model {model2} --domain {data} --no-cloze", NOT_REGULAR,
         fifo("model2/config.json")),
    case("a model whose tokenizer.json is a FIFO", K, "eval --model {model2} --domain {data} --no-cloze",
         NOT_REGULAR, fifo("model2/tokenizer.json")),
    case("a model whose weights are a FIFO", K, "eval --model {model2} --domain {data} --no-cloze", NOT_REGULAR,
         fifo("model2/model.safetensors")),
    case("a merge input whose weights link to /dev/zero", K, "merge --models {model} {model2} --alpha 0.5 "
         "--output {out}", NOT_REGULAR, zero("model2/model.safetensors")),
    case("train --data a directory", K, "train --model {model} --data {mine} --output {out}", "mine"),
    case("train --data /dev/null", K, "train --model {model} --data {root}/in.jsonl --output {out}", NOT_REGULAR,
         zero("in.jsonl", "/dev/null")),
    case("train --max-steps past any integer", K, "train --model {model} --data {data} --output {out} --max-steps "
         "1e30", "--max-steps"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_endless(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, world, capsys)
