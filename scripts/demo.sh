#!/usr/bin/env bash
# Set up (idempotent), build the embedded testbed, and fine-tune its base model on
# the chain-of-thought clinical-calculation family; then measure what SFT gained
# on the domain and what it cost on held-out general text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
FL=.venv/bin/forgetless
$FL testbed build --preset tiny
TB=$($FL testbed path --preset tiny)
mkdir -p runs
$FL train --config configs/testbed_tiny_sft.yaml --data "$TB/tasks/medcalc_cot/train.jsonl" --output runs/demo-sft --overwrite
$FL eval --model runs/demo-sft --general "$TB/general/heldout.jsonl" --domain "$TB/tasks/medcalc_cot/test.jsonl" --output runs/demo-sft/eval.json
echo "base model figures: $TB/manifest.json; fine-tuned: runs/demo-sft/eval.json"
