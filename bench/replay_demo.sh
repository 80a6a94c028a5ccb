#!/usr/bin/env bash
# The testbed demonstration of replay (issue 4): fine-tune medcalc_cot on the tiny testbed
# with plain SFT, and with context-free, contextual and corpus replay at two mixing ratios,
# all from the command line, then measure general forgetting, domain exact match and the
# context-free KL estimate of every model.
#
#   bash bench/replay_demo.sh [OUT_DIR] [STEPS]
#
# Runs go in parallel, one thread each (on a shared 2-core machine two-thread processes
# lose most of their time spinning). STEPS defaults to 100 optimizer steps for every run.
set -euo pipefail
OUT=${1:-runs/replay_demo}
STEPS=${2:-100}
export OMP_NUM_THREADS=1
TB=$(forgetless testbed path --preset tiny)
DATA=$TB/tasks/medcalc_cot/train.jsonl
mkdir -p "$OUT"

# Replay data: 1000 context-free samples (T=1, L=128), the base model's own completions of
# 1000 training prompts, a 1000-piece slice of the pretraining text; and 256 held-out
# context-free samples (another seed) for the KL estimate.
[ -f "$OUT/cf.jsonl" ] || forgetless generate --model testbed:tiny --output "$OUT/cf.jsonl" --num-samples 1000 --max-new-tokens 128 --seed 0 &
[ -f "$OUT/ctx.jsonl" ] || forgetless generate --model testbed:tiny --prompts "$DATA" --num-samples 1000 --max-new-tokens 64 --seed 0 --output "$OUT/ctx.jsonl" &
[ -f "$OUT/corpus.jsonl" ] || forgetless generate --corpus "$TB/general/pretrain.jsonl" --num-samples 1000 --max-chars 512 --seed 0 --output "$OUT/corpus.jsonl" &
[ -f "$OUT/cf_heldout.jsonl" ] || forgetless generate --model testbed:tiny --output "$OUT/cf_heldout.jsonl" --num-samples 256 --max-new-tokens 128 --seed 12345 &
wait

train() {  # NAME [REPLAY_JSON]
  local name=$1; shift
  local extra=()
  [ $# -gt 0 ] && extra=(--replay "$1")
  [ -d "$OUT/$name" ] || forgetless train --config configs/testbed_tiny_sft.yaml --data "$DATA" --output "$OUT/$name" \
      --max-steps "$STEPS" --save-steps 50 "${extra[@]}" > "$OUT/train_$name.log" 2>&1
}
train sft &
for kind in cf ctx corpus; do
  for r in 0.25 1.0; do
    train "${kind}_r$r" "{\"data\": \"$OUT/$kind.jsonl\", \"ratio\": $r, \"kl_eval_data\": \"$OUT/cf_heldout.jsonl\"}" &
  done
done
wait

for name in sft cf_r0.25 cf_r1.0 ctx_r0.25 ctx_r1.0 corpus_r0.25 corpus_r1.0; do
  # Reduced scope (first 40 held-out texts, first 100 test prompts) to fit a shared 2-core machine.
  forgetless eval --model "$OUT/$name" --general "$TB/general/heldout.jsonl" --general-limit 40 \
      --domain "$TB/tasks/medcalc_cot/test.jsonl" --limit 100 --no-cloze --no-progress --output "$OUT/eval_$name.json" > /dev/null
  forgetless kl-estimate --model "$OUT/$name" --samples "$OUT/cf_heldout.jsonl" --output "$OUT/kl_$name.json" > /dev/null
done
python - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
print(f"{'run':14s} {'general nats/token':>18s} {'exact match':>11s} {'completion loss':>15s} {'KL est. nats/seq [95% CI]':>30s}")
for name in ["sft", "cf_r0.25", "cf_r1.0", "ctx_r0.25", "ctx_r1.0", "corpus_r0.25", "corpus_r1.0"]:
    ev = json.load(open(f"{out}/eval_{name}.json"))
    kl = json.load(open(f"{out}/kl_{name}.json"))["kl_estimate"]
    print(f"{name:14s} {ev['general']['nats_per_token']:18.3f} {ev['domain']['exact_match']:11.3f} "
          f"{ev['domain']['completion_loss']:15.3f} "
          f"{kl['kl']:10.1f} [{kl['ci_low']:.1f}, {kl['ci_high']:.1f}]")
EOF
