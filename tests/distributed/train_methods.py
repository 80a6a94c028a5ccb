"""Worker for the multi-process invariance test: a few SGD steps with each method, weights saved.

Run under ``torchrun --nproc_per_node N``; with N processes each takes ``8 / N``
examples per micro-batch, so the global batch (2 micro-batches × 8) is the same
for any N. Writes ``OUT/<method>.safetensors`` from rank 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from forgetless.training.config import TrainConfig
from forgetless.data import load_examples
from forgetless.training.run import make_trainer

METHODS: dict[str, dict] = {
    "talr": {"method": "talr", "method_params": {"tau": "token_median"}},
    "flow": {"method": "flow", "regularizers": {"l2sp": {"weight": 10.0, "reduction": "sum"}}},
}


def main(model_dir: str, data: str, out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples = load_examples(data, tokenizer)
    for name, spec in METHODS.items():
        cfg = TrainConfig(model=model_dir, data=data, output=out, batch_size=8 // world, grad_accum=2, max_steps=3,
                          learning_rate=0.5, lr_scheduler="constant", group_by_length=False, max_grad_norm=0.0,
                          **spec)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        trainer = make_trainer(cfg, model, tokenizer, [dict(e) for e in examples], Path(out) / f"work-{name}",
                               save_strategy="no", optim="sgd", ddp_backend="gloo" if world > 1 else None)
        trainer.train()
        if trainer.is_world_process_zero():
            state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items() if k != "lm_head.weight"}
            save_file(state, str(Path(out) / f"{name}.safetensors"))
        trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:4])
