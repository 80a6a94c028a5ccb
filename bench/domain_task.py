"""Does the tiny testbed base learn a task family in the demo's budget? Test exact match and forgetting.

For one family of ``forgetless.testbed.tasks``: its splits as the testbed would
write them (the preset's sizes and seed), their constant-answer floor and token
lengths, then plain SFT of the base at the demo's training settings
(``configs/quick.yaml``'s ``training`` block: batch 8, cosine, warmup 0.05) for
``--steps`` steps at ``--lr``, and the fine-tuned model's exact match on the test
split (200 items, greedy) and held-out general loss (the first 40 held-out texts,
as the demo measures it) against the base's.

    OMP_NUM_THREADS=1 python bench/domain_task.py --task antidote_cot --steps 200 [--lr 2e-3]
        [--base DIR] [--json out.json]

``--base`` points at a built base model directory (default: the built ``tiny``
testbed's, built if missing), so candidate families can be measured on a cached
base without rebuilding the testbed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from forgetless.atomic import write_jsonl
from forgetless.config import load_yaml
from forgetless.training.config import TrainConfig
from forgetless.evaluation.codelength import text_code_lengths
from forgetless.evaluation.domain import domain_accuracy
from forgetless.data.texts import read_texts
from forgetless.machine import machine_stamp
from forgetless.testbed.build import build_testbed
from forgetless.testbed.presets import get_preset
from forgetless.testbed.tasks import FAMILIES, constant_answer_floor, generate_family
from forgetless.training.run import load_tokenizer, train

ROOT = Path(__file__).resolve().parents[1]


def general_loss(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> float:
    """Held-out loss in nats/token, summed over texts as the study does (``study.running.measure``)."""
    lengths = text_code_lengths(model, tokenizer, texts, progress=False)
    return sum(c.nats for c in lengths) / sum(c.tokens for c in lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="training seed (data order)")
    parser.add_argument("--base", type=Path, help="base model directory (default: the built tiny testbed's)")
    parser.add_argument("--general", type=Path, help="held-out general JSONL (default: next to --base)")
    parser.add_argument("--general-limit", type=int, default=40)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--predictions", type=Path, help="also write every test prediction here (JSONL)")
    args = parser.parse_args()
    base = args.base or build_testbed("tiny").base_model_dir
    general = args.general or base.parent / "general" / "heldout.jsonl"
    texts = read_texts(general)[: args.general_limit]
    family = FAMILIES[args.task]
    tokenizer = load_tokenizer(str(base))
    splits = generate_family(family, get_preset("tiny").task_sizes, get_preset("tiny").seed)
    lengths = [len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) for r in splits["train"]]
    answer, floor = constant_answer_floor(splits["test"])
    training = load_yaml(ROOT / "configs" / "quick.yaml")["training"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for split, rows in splits.items():
            write_jsonl(work / f"{split}.jsonl", rows)
        values = {**training, "model": str(base), "data": str(work / "train.jsonl"), "output": str(work / "out"),
                  "learning_rate": args.lr, "max_steps": args.steps, "seed": args.seed,
                  "save_steps": 10**6, "logging_steps": 10**6}
        start = time.perf_counter()
        out = train(TrainConfig(**values))
        seconds = time.perf_counter() - start
        tuned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        original = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
        scored = domain_accuracy(tuned, tokenizer, work / "test.jsonl", progress=False)
        if args.predictions:
            write_jsonl(args.predictions, scored["predictions"])
        figures = {
            "task": args.task, "steps": args.steps, "lr": args.lr, "seed": args.seed,
            "floor": floor, "floor_answer": answer,
            "tokens_mean": statistics.mean(lengths), "tokens_max": max(lengths),
            "test_exact_match": scored["exact_match"],
            "validation_exact_match": domain_accuracy(tuned, tokenizer, work / "validation.jsonl",
                                                      progress=False)["exact_match"],
            "general_base": general_loss(original, tokenizer, texts),
            "general_tuned": general_loss(tuned, tokenizer, texts),
            "train_seconds": seconds, "threads": torch.get_num_threads(),
            "examples": [(p["generation"], p["gold"]) for p in scored["predictions"][:3]],
            "machine": machine_stamp()["summary"],
        }
    figures["forgetting"] = figures["general_tuned"] - figures["general_base"]
    print(json.dumps(figures, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
