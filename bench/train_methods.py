"""Step time of every training method as a ratio to plain ``nll``, measured in one run.

Model: the testbed's ``small`` architecture (Llama d384, 6 layers, 6 heads, vocab
8192), randomly initialized; data: synthetic prompt/completion examples of random
token ids (32-token prompt masked, 32-96-token completion). Every method trains the
same steps on the same data; methods are interleaved over several rounds and each
one's median step time (after warm-up steps) is compared to nll's. FLOW's base-model
pre-pass is timed separately and compared to one epoch of no-grad forward passes.

Targets (issue 3): dft, talr <= 1.05; flow <= 1.02 after its pre-pass; l2sp <= 1.15;
LoRA faster than full fine-tuning.

    python bench/train_methods.py [--steps 8] [--rounds 2] [--examples 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

from forgetless.training.config import TrainConfig
from forgetless.data import PadCollator
from forgetless.testbed.presets import get_preset
from forgetless.training.run import make_trainer

METHODS: dict[str, dict[str, Any]] = {
    "nll": {},
    "dft": {"method": "dft"},
    "talr": {"method": "talr"},
    "flow": {"method": "flow"},
    "flow_token": {"method": "flow_token"},
    "l2sp": {"regularizers": {"l2sp": {"weight": 1e-3}}},
    "lora": {"lora": True},  # docs/methods.md#lora default: r = 64 on every linear layer
    # At d = 384, r = 64 adapters cost a third of each weight's matmul; r = 16 is the
    # rank-to-width ratio (1/24) of r = 64 on a d ~ 1.5k model.
    "lora r16": {"lora": True, "lora_r": 16, "lora_alpha": 16.0},
    "talr+lora": {"method": "talr", "lora": True},
    "nll GA4": {"grad_accum": 4},
    "talr GA4": {"method": "talr", "grad_accum": 4},
}


class _Tokenizer:
    """Just enough of a tokenizer for the trainer (no text is ever decoded)."""

    pad_token_id = 0
    model_input_names = ["input_ids"]


def make_model() -> LlamaForCausalLM:
    preset = get_preset("small")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=preset.vocab_size, hidden_size=preset.hidden_size, num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads, num_key_value_heads=preset.num_heads,
        intermediate_size=preset.intermediate_size, hidden_act=preset.hidden_act, max_position_embeddings=512,
        tie_word_embeddings=True, pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def make_examples(n: int, seed: int = 0) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        completion = int(torch.randint(32, 97, (1,), generator=generator))
        ids = torch.randint(1, 8192, (32 + completion,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * 32 + ids[32:]})
    return examples


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.times.append(time.perf_counter() - self.start)


def run(name: str, spec: dict[str, Any], examples: list[dict], steps: int, batch: int, work: Path) -> tuple[list[float], float | None]:
    spec = dict(spec)
    accum = spec.pop("grad_accum", 1)
    cfg = TrainConfig(model="bench", data=str(work / "data.jsonl"), output=str(work / "out"), batch_size=batch // accum,
                      grad_accum=accum, max_steps=steps, learning_rate=1e-4, lr_scheduler="constant",
                      precision="fp32", **spec)
    timer = StepTimer()
    start = time.perf_counter()
    trainer = make_trainer(cfg, make_model(), _Tokenizer(), [dict(e) for e in examples], work / name.replace(" ", "_"),
                           callbacks=[timer], save_strategy="no", disable_tqdm=True, logging_steps=10**6)
    setup = time.perf_counter() - start
    trainer.train()
    prepass = trainer.objective.report().get("prepass_seconds")
    return timer.times, (prepass if prepass is not None else None) if name.startswith("flow") else setup


@torch.no_grad()
def forward_epoch_seconds(examples: list[dict], batch: int) -> float:
    """One epoch of no-grad forward passes in training order and batch size (the pre-pass budget)."""
    model = make_model().eval()
    collate = PadCollator(0)
    start = time.perf_counter()
    for i in range(0, len(examples), batch):
        b = collate(examples[i : i + batch])
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per method per round")
    parser.add_argument("--warmup", type=int, default=2, help="steps per round left out of the timing")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="examples per optimizer step")
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    examples = make_examples(args.examples)
    times: dict[str, list[float]] = {m: [] for m in args.methods}
    prepass: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data.jsonl").write_text("")  # FLOW's cache goes next to the data: a fresh temporary dir
        for round_ in range(args.rounds):
            for name in args.methods:
                step_times, extra = run(name, METHODS[name], examples, args.steps, args.batch, work / f"r{round_}")
                times[name] += step_times[args.warmup :]
                if name == "flow" and extra is not None:
                    prepass.append(extra)
        epoch = forward_epoch_seconds(examples, args.batch)
    base = statistics.median(times["nll"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: testbed 'small' architecture "
          f"(random init); {args.batch} examples/step, {args.rounds} rounds x {args.steps - args.warmup} timed steps")
    print(f"{'method':<12} {'median step s':>14} {'ratio to nll':>13}")
    for name in args.methods:
        median = statistics.median(times[name])
        reference = statistics.median(times["nll GA4"]) if name == "talr GA4" and "nll GA4" in times else base
        label = " (to nll GA4)" if name == "talr GA4" else ""
        print(f"{name:<12} {median:>14.3f} {median / reference:>13.3f}{label}")
    if prepass:
        print(f"flow pre-pass: {statistics.median(prepass):.2f} s over {args.examples} examples; one epoch of no-grad "
              f"forwards in training order: {epoch:.2f} s; ratio {statistics.median(prepass) / epoch:.2f}")


if __name__ == "__main__":
    main()
