"""Class 2 of issue 34: a broken model is never reported as a success. Non-finite or absurd settings are refused up
front naming the flag; a model whose weights are NaN, missing or of the wrong shape is refused naming the tensor; a
run, merge or conversion whose result would not be finite writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.hostile.harness import Case, Setup, World, case, params, run_case

K = "broken-model"
TENSOR = "model.layers.0.mlp.up_proj.weight"
T = "train --model {model} --data {data} --output {out}"
M = "merge --models {model} {model2} --output {out}"


def edit_weights(model_dir: Path, change: str) -> None:
    """Break ``model_dir``'s ``TENSOR`` in place: ``nan``, ``inf``, ``missing``, ``shape``, or ``huge`` (one value
    past fp16's range, finite in fp32)."""
    weights = load_file(str(model_dir / "model.safetensors"))
    if change == "missing":
        del weights[TENSOR]
    elif change == "shape":
        weights[TENSOR] = torch.zeros(3, 3)
    else:
        weights[TENSOR][3, 5] = {"nan": float("nan"), "inf": float("inf"), "huge": 2e5}[change]
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})


def gguf_with(value: float) -> Setup:
    """A setup writing ``m.gguf``: the tiny Llama (F32) with one weight of ``TENSOR`` set to ``value``."""
    def setup(world: World) -> None:
        from tests.conftest import TEXT, make_model
        from tests.gguf_files import train_gpt2_style_tokenizer, write_llama_gguf

        tokenizer = train_gpt2_style_tokenizer(TEXT, vocab_size=384)
        model = make_model(tokenizer)
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight[3, 5] = value
        write_llama_gguf(model, tokenizer, world.root / "m.gguf")
    return setup


def broken(change: str, which: str = "model2") -> Setup:
    """A setup that breaks the world's ``which`` model with ``change``."""
    def setup(world: World) -> None:
        edit_weights(world[which], change)
    return setup


SETTINGS: list[Case] = [
    case("train --learning-rate nan", K, f"{T} --learning-rate nan", "key 'learning_rate': Input should be a finite"),
    case("train --learning-rate -inf", K, f"{T} --learning-rate -inf", "key 'learning_rate': Input should be a finite"),
    case("train --learning-rate 1e400", K, f"{T} --learning-rate 1e400", "key 'learning_rate': Input should be a fin"),
    case("train --learning-rate 0", K, f"{T} --learning-rate 0", "learning_rate"),
    case("train --learning-rate -1e-4", K, f"{T} --learning-rate -1e-4", "learning_rate"),
    case("train --weight-decay inf", K, f"{T} --weight-decay inf", "key 'weight_decay': Input should be a finite"),
    case("train --weight-decay -1", K, f"{T} --weight-decay -1", "weight_decay"),
    case("train --warmup-ratio nan", K, f"{T} --warmup-ratio nan", "key 'warmup_ratio': Input should be a finite"),
    case("train --warmup-ratio 2", K, f"{T} --warmup-ratio 2", "warmup_ratio"),
    case("train --max-grad-norm inf", K, f"{T} --max-grad-norm inf", "key 'max_grad_norm': Input should be a finite"),
    case("train --max-grad-norm -1", K, f"{T} --max-grad-norm -1", "max_grad_norm"),
    case("train --lora-alpha nan", K, f"{T} --lora --lora-alpha nan", "key 'lora_alpha': Input should be a finite"),
    case("train --lora-dropout 1.5", K, f"{T} --lora --lora-dropout 1.5", "lora_dropout"),
    case("train --lora-dropout nan", K, f"{T} --lora --lora-dropout nan", "key 'lora_dropout': Input should be a fin"),
    case("train --lora-r 0", K, f"{T} --lora --lora-r 0", "lora_r"),
    case("train --epochs inf", K, f"{T} --epochs inf", "key 'epochs': Input should be a finite"),
    case("train --epochs nan", K, f"{T} --epochs nan", "key 'epochs': Input should be a finite"),
    case("train --epochs -1", K, f"{T} --epochs -1", "epochs"),
    case("train l2sp weight Infinity", K, [*T.split(), "--regularizers", '{{"l2sp": {{"weight": Infinity}}}}'],
         "regularizer l2sp: weight must be"),
    case("train l2sp weight NaN", K, [*T.split(), "--regularizers", '{{"l2sp": {{"weight": NaN}}}}'],
         "regularizer l2sp: weight must be"),
    case("train kl beta -Infinity", K, [*T.split(), "--regularizers", '{{"kl": {{"beta": -Infinity}}}}'],
         "regularizer kl: beta must be"),
    case("train talr tau inf", K, [*T.split(), "--method", "talr", "--method-params", '{{"tau": Infinity}}'],
         "method talr: tau must be"),
    case("train replay ratio nan", K, [*T.split(), "--replay", '{{"data": "{corpus}", "ratio": NaN}}'],
         "key 'replay.ratio': Input should be a finite number"),
    case("train replay ratio 1e9", K, [*T.split(), "--replay", '{{"data": "{corpus}", "ratio": 1e9}}'],
         "key 'replay.ratio': Input should be less than or equal to 1000"),
    case("merge --alpha nan", K, f"{M} --alpha nan", "key 'alpha': Input should be a finite number"),
    case("merge --alpha inf", K, f"{M} --alpha inf", "key 'alpha': Input should be a finite number"),
    case("merge --alpha 1.5", K, f"{M} --alpha 1.5", "alpha"),
    case("merge --weights nan", K, f"{M} --rule average --weights nan 1", "weights"),
    case("merge --lambdas inf", K, f"{M} --rule task_arithmetic --lambdas inf", "key 'lambdas.0': Input should be a "
         "finite number"),
    case("merge coefficient past float32", K, f"{M} --rule task_arithmetic --lambdas 1e39",
         "coefficient -1e+39 overflows float32"),
    case("merge --lambdas 1e308 overflowing the base's share", K, "merge --models {model} {model2} {model2} --output "
         "{out} --rule task_arithmetic --lambdas 1e308", "coefficient -inf is not a finite number"),
    case("merge --budget nan", K, f"{M} --sweep --alphas 0 1 --general {{corpus}} --budget nan", "budget"),
    case("merge cocktail --temperature nan", K, f"{M} --rule cocktail --examples {{data}} --temperature nan",
         "temperature"),
]

WEIGHTS: list[Case] = [
    case("train from a base holding NaN", K, T, f"tensor {TENSOR} holds 1 non-finite value(s)", broken("nan", "model"),
         slow=True),
    case("eval of a model holding inf", K, "eval --model {model2} --domain {data} --no-cloze",
         f"tensor {TENSOR} holds 1 non-finite value(s)", broken("inf"), slow=True),
    case("generate from a model holding NaN", K, "generate --model {model2} --num-samples 1 --output {outfile}",
         f"tensor {TENSOR} holds 1 non-finite value(s)", broken("nan"), slow=True),
    case("kl-estimate against a base holding NaN", K, "kl-estimate --model {model} --base {model2} --samples {samples}",
         f"tensor {TENSOR} holds 1 non-finite value(s)", broken("nan"), slow=True),
    case("train from a base missing a tensor", K, "train --model {model2} --data {data} --output {out}",
         f"the weights lack 1 tensor(s) of the LlamaForCausalLM architecture ({TENSOR})", broken("missing"), slow=True),
    case("eval of a model missing a tensor", K, "eval --model {model2} --domain {data} --no-cloze",
         "the weights lack 1 tensor(s)", broken("missing"), slow=True),
    case("merge with an input missing a tensor", K, f"{M} --alpha 0.5", TENSOR, broken("missing"), slow=True),
    case("train from a weight of the wrong shape", K, "train --model {model2} --data {data} --output {out}",
         f"tensor {TENSOR} has shape [3, 3] in the weights, but config.json's LlamaForCausalLM expects [64, 32]",
         broken("shape"), slow=True),
    case("generate from a weight of the wrong shape", K, "generate --model {model2} --num-samples 1 --output "
         "{outfile}", f"tensor {TENSOR} has shape [3, 3]", broken("shape"), slow=True),
    case("merge with a weight of the wrong shape", K, f"{M} --alpha 0.5", f"tensor {TENSOR} has shape [64, 32] in",
         broken("shape"), slow=True),
    case("merge of an input holding NaN", K, f"{M} --alpha 0.5", f"tensor {TENSOR} of the merge holds 1 non-finite",
         broken("nan"), slow=True),
    case("fp16 merge that overflows", K, f"{M} --alpha 0.5 --dtype fp16",
         f"tensor {TENSOR} of the merge holds 1 non-finite value(s) (NaN or inf) of 2048 in fp16; nothing was written",
         broken("huge"), slow=True),
    case("fp16 copy (alpha 1) that overflows", K, f"{M} --alpha 1 --dtype fp16",
         f"tensor {TENSOR} of the merge holds 1 non-finite value(s)", broken("huge"), slow=True),
    case("task arithmetic whose sum overflows fp32", K, f"{M} --rule task_arithmetic --lambdas 1e34",
         "of the merge holds", broken("huge"), slow=True),
    case("fp16 conversion of a GGUF that overflows", K, "convert-gguf {root}/m.gguf --dtype fp16 --output {out}",
         f"m.gguf: tensor {TENSOR} holds 1 non-finite value(s) (NaN or inf) of 2048; nothing was written; convert "
         "with --dtype fp32", gguf_with(1e5), slow=True),
    case("conversion of a GGUF holding NaN", K, "convert-gguf {root}/m.gguf --dtype fp32 --output {out}",
         f"m.gguf: tensor {TENSOR} holds 1 non-finite value(s)", gguf_with(float("nan")), slow=True),
    case("train that diverges", K, f"{T} --learning-rate 1e10 --max-steps 6 --batch-size 4",
         "training diverged; lower --learning-rate (now 1e+10)", slow=True),
    case("train saving fp16 weights that overflow", K, "train --model {model2} --data {data} --output {out} "
         "--max-steps 1 --batch-size 2 --learning-rate 1e-9 --save-dtype fp16", "the weights cast to fp16 (--save-dtype): "
         f"tensor {TENSOR} holds 1 non-finite value(s)", broken("huge"),
         slow=True),
]


@pytest.mark.parametrize("case", params(SETTINGS + WEIGHTS))
def test_broken_model(case: Case, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, world, capsys)
