"""Plain ``nll`` training throughput: forgetless vs TRL's ``SFTTrainer``, same model and data, one run.

Model: the testbed's ``small`` architecture, randomly initialized (the same as
``bench/train_methods.py``); data: the same synthetic pre-tokenized prompt/completion
examples, loss on completions only, same batch size, learning rate, fp32 and no length
grouping in either. Both sides run their loop for the same steps, interleaved over
rounds; the ratio is TRL's median step time over forgetless's (>= 1.0: forgetless at
least as fast). TRL runs with its defaults otherwise (it also logs token accuracy and
entropy, which is part of what a TRL user pays).

    bash bench/setup_trl.sh            # once: bench/.venv-trl with trl, never in the core install
    bench/.venv-trl/bin/python bench/vs_trl.py [--steps 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_methods import StepTimer, _Tokenizer, make_examples, make_model  # noqa: E402

from forgetless.training.config import TrainConfig  # noqa: E402
from forgetless.training.run import make_trainer  # noqa: E402


def forgetless_steps(examples: list[dict], steps: int, batch: int, work: Path) -> list[float]:
    cfg = TrainConfig(model="bench", data=str(work / "data.jsonl"), output=str(work / "out"), batch_size=batch,
                      max_steps=steps, learning_rate=1e-4, lr_scheduler="constant", precision="fp32",
                      group_by_length=False)
    timer = StepTimer()
    trainer = make_trainer(cfg, make_model(), _Tokenizer(), [dict(e) for e in examples], work / "fl",
                           callbacks=[timer], save_strategy="no", disable_tqdm=True, logging_steps=10**6)
    trainer.train()
    return timer.times


def trl_steps(examples: list[dict], steps: int, batch: int, work: Path) -> list[float]:
    import datasets
    from transformers import PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    from forgetless.testbed.build import testbed_dir
    from forgetless.testbed.presets import get_preset

    tokenizer = PreTrainedTokenizerFast.from_pretrained(testbed_dir(get_preset("tiny")) / "tokenizer")
    rows = [{"input_ids": e["input_ids"], "completion_mask": [int(x != -100) for x in e["labels"]]} for e in examples]
    config = SFTConfig(output_dir=str(work / "trl"), per_device_train_batch_size=batch, max_steps=steps,
                       learning_rate=1e-4, lr_scheduler_type="constant", completion_only_loss=True, report_to="none",
                       save_strategy="no", disable_tqdm=True, logging_steps=10**6, use_cpu=True, bf16=False,
                       max_length=None, dataloader_num_workers=0, seed=0,
                       # TRL turns it on by default (a third more work a step); forgetless does not: the same work.
                       gradient_checkpointing=False)
    timer = StepTimer()
    trainer = SFTTrainer(model=make_model(), args=config, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    import trl

    examples = make_examples(args.batch * args.steps)
    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            work = Path(tmp) / f"r{round_}"
            ours += forgetless_steps(examples, args.steps, args.batch, work)[args.warmup :]
            theirs += trl_steps(examples, args.steps, args.batch, work)[args.warmup :]
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"torch {torch.__version__}, trl {trl.__version__}, {torch.get_num_threads()} threads; "
          f"{args.batch} examples/step, {args.rounds} rounds x {args.steps - args.warmup} timed steps")
    print(f"forgetless nll  median step {a:.3f} s")
    print(f"TRL SFTTrainer  median step {b:.3f} s")
    print(f"throughput ratio forgetless / TRL: {b / a:.3f}")


if __name__ == "__main__":
    main()
