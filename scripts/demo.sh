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
.venv/bin/python - "$TB/manifest.json" runs/demo-sft/eval.json <<'PY'
import json, sys
base = json.load(open(sys.argv[1]))["metrics"]
tuned = json.load(open(sys.argv[2]))
b, t = base["heldout_nats_per_token"], tuned["general"]["nats_per_token"]
print(f"held-out general loss: base {b:.3f} -> fine-tuned {t:.3f} nats/token (forgetting {t - b:+.3f})")
print(f"medcalc_cot exact match: base {base['test_exact_match']['medcalc_cot']:.1%} -> fine-tuned {tuned['domain']['exact_match']:.1%}")
PY
