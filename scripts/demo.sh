#!/usr/bin/env bash
# The README demo: set up (idempotent), build the embedded testbed, and run the quick
# study (configs/quick.yaml): plain SFT at two learning rates, TALR, FLOW, L2-SP,
# LoRA and context-free replay, a WiSE-FT sweep, an output ensemble and LM-Cocktail,
# then the frontier, the report and a recommendation. Rerunning reuses finished work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The testbed's pretraining (batch 16 x 128 tokens) is compute-bound: every core helps
# (about twice as fast on 2 cores as on 1), so it is built before the thread limit below.
# Instant when it is already built.
.venv/bin/forgetless testbed build --preset tiny > /dev/null
# The study's runs (batch 8) train as fast on one thread as on two (measured), two of
# them run side by side, and one thread does not spin-wait when the machine is busy.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/forgetless study configs/quick.yaml "$@"
echo
sed -n '/^## Recommendation/,/^## Frontier/p' runs/quick/report.md | sed '$d'
echo "open runs/quick/report.html for the whole report"
