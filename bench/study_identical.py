"""Run one tiny study on two source trees (or two executors) and diff their ``results.jsonl``.

    python bench/study_identical.py --src /work/main/src --src src            # main vs this tree, serial
    python bench/study_identical.py --src src --src src --executor serial --executor local

A refactoring of the study must not change a single figure. This builds a tiny
model from config (a 2-layer, 32-dim Llama over a 384-token BPE, as the tests'
fixtures do) and tiny data once, writes a study that touches every stage (the
base, plain SFT and context-free replay with the KL estimate's samples, WiSE-FT
and output-ensemble sweeps, LM-Cocktail with a peer), runs it from scratch in a
fresh process per side (``PYTHONPATH`` set to that side's source tree), and
compares the rows field by field, ignoring only the fields that record time or
machine. Both sides run in the same study directory (moved aside after each run),
so the cell keys, which include the paths of study-made files, are comparable too.

Exit status 0 when the results are identical, 1 otherwise (the differing fields are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Fields that legitimately differ between two runs of the same study.
IGNORED = {"measured_on", "trained_on", "train_seconds"}

RUN = """
import sys
from forgetless.study.config import load_study
try:
    from forgetless.study.running.executors import make_executor
    from forgetless.study.running.runner import run_study
except ImportError:  # a tree from before the study was split into running/ and reporting/
    from forgetless.study.executors import make_executor
    from forgetless.study.runner import run_study
executor = make_executor(sys.argv[2], workers=2 if sys.argv[2] == "local" else None)
run_study(load_study(sys.argv[1]), print_fn=lambda _: None, executor=executor)
"""


def build_fixtures(root: Path) -> dict[str, str]:
    """The tiny model directory and data files, written once under ``root``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from forgetless.testbed.tokenizer import train_tokenizer

    text = ["In the beginning was the word, and the word was with the model.",
            "The quick brown fox jumps over the lazy dog 0123456789 times.",
            "Answer: 12. Sum 0 + 1 = 1, 1 + 2 = 3. Glasgow Coma Scale, CURB-65, CHA2DS2-VASc.",
            "User: hello\nAssistant: hi there\nSystem: be brief"] * 20
    tokenizer = train_tokenizer(text, vocab_size=384, out_dir=root / "tok")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model_dir = root / "model"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    def write(name: str, rows: list[dict[str, Any]]) -> str:
        path = root / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    return {
        "model": str(model_dir),
        "train": write("train.jsonl", [{"prompt": f"Sum {a} and {b}.\n", "completion": f" Answer: {a + b}"}
                                       for a in range(4) for b in range(4)]),
        "test": write("test.jsonl", [{"prompt": f"Sum {a} and 1.\n", "answer": str(a + 1)} for a in range(6)]),
        "general": write("general.jsonl", [{"text": f"The word was with the model {i}."} for i in range(5)]),
        "peer": write("peer.jsonl", [{"prompt": f"Sort {a} {b}.\n", "completion": f" {min(a, b)} {max(a, b)}"}
                                     for a in range(4) for b in range(4)]),
    }


def study_config(fixtures: dict[str, str], output: Path) -> dict[str, Any]:
    """A study with every stage: base, two methods (one replaying), both sweeps, LM-Cocktail with a peer."""
    return {
        "name": "identical",
        "output": str(output),
        "base_model": fixtures["model"],
        "data": {"train": fixtures["train"], "test": fixtures["test"], "general": fixtures["general"]},
        "training": {"max_steps": 3, "batch_size": 4, "save_steps": 2, "logging_steps": 1},
        "methods": [{"name": "sft", "learning_rates": [1e-3, 1e-2]},
                    {"name": "cf-replay", "learning_rates": [1e-3],
                     "train": {"replay": {"data": "context-free", "ratio": 0.5}}}],
        "seeds": [0, 1],
        "sweeps": {"interpolation": [0.25, 0.5], "ensemble": [0.5]},
        "cocktail": {"method": "sft", "examples": 3,
                     "peers": [{"name": "sorting", "data": fixtures["peer"], "learning_rate": 1e-2}]},
        "eval": {"bootstrap": 50},
        "context_free": {"replay_samples": 8, "kl_samples": 6, "max_new_tokens": 12},
        "budget": 0.5,
    }


def normalise(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its time and machine fields."""
    return {k: v for k, v in row.items() if k not in IGNORED}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a source tree (PYTHONPATH); give two")
    parser.add_argument("--executor", action="append", help="serial (default) or local (2 workers), per side")
    parser.add_argument("--out", default="/tmp/study_identical")
    args = parser.parse_args()
    executors = args.executor or ["serial", "serial"]
    if len(args.src) != 2 or len(executors) != 2:
        parser.error("give --src twice (and --executor twice or not at all)")
    out = Path(args.out)
    if out.exists():
        parser.error(f"--out {out}: exists; choose a fresh directory")
    fixtures = build_fixtures(out / "fixtures")
    results = []
    for k, (src, executor) in enumerate(zip(args.src, executors)):
        root = out / "run"
        root.mkdir(parents=True)
        cfg = root / "study.yaml"
        cfg.write_text(json.dumps(study_config(fixtures, root / "study")))  # JSON is YAML
        env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        start = time.time()
        with open(out / f"side{k}.log", "w") as log:  # training's progress bars and warnings
            done = subprocess.run([sys.executable, "-c", RUN, str(cfg), executor], env=env, stdout=log, stderr=log)
        if done.returncode:
            print(f"side {k}: {src} ({executor}) failed; log: {out / f'side{k}.log'}")
            return 1
        print(f"side {k}: {src} ({executor}) ran in {time.time() - start:.0f} s")
        lines = (root / "study" / "results.jsonl").read_text().splitlines()
        results.append([normalise(json.loads(line)) for line in lines])
        root.rename(out / f"side{k}")  # the next side runs in the same directory
    a, b = results
    differences = []
    if [r["id"] for r in a] != [r["id"] for r in b]:
        differences.append(f"row ids differ:\n  {[r['id'] for r in a]}\n  {[r['id'] for r in b]}")
    for left, right in zip(a, b):
        for key in sorted(set(left) | set(right)):
            if left.get(key, "<absent>") != right.get(key, "<absent>"):
                differences.append(f"{left['id']}: {key}: {left.get(key, '<absent>')!r} != "
                                   f"{right.get(key, '<absent>')!r}")
    kinds = sorted({r["kind"] for r in a})
    if differences:
        print("\n".join(differences[:50]))
        print(f"DIFFERENT: {len(differences)} differences over {len(a)} rows")
        return 1
    print(f"IDENTICAL: {len(a)} rows (kinds {', '.join(kinds)}), every field but {sorted(IGNORED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
