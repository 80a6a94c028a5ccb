#!/usr/bin/env bash
# The multi-GPU checks a CPU machine cannot run, for a session with GPUs:
#   bash bench/gpu_check.sh            # from the repository root, forgetless installed
# 1. `forgetless train --launcher accelerate` with the shipped DDP, FSDP (full shard, layer class
#    resolved from the model) and DeepSpeed ZeRO-3 configs over every visible GPU; each run must
#    write a loadable model with world_size = the GPU count and a finite loss, and its step-1 loss
#    must equal a one-process run's (one GPU, the same global batch): the CPU test's check, on GPUs.
# 2. the executor tests (serial, local, ray give one results.jsonl; killed workers), on a GPU machine,
#    where local workers and Ray tasks take one GPU each.
# DeepSpeed is skipped (and said so) when it is not installed. Prints one line per check.
set -uo pipefail
OUT=${OUT:-runs/gpu_check}
N=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$N" -lt 1 ]; then echo "gpu_check: no CUDA GPU visible"; exit 1; fi
rm -rf "$OUT" && mkdir -p "$OUT"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from tests.conftest import TEXT, make_model
from forgetless.testbed.tokenizer import train_tokenizer
out = Path(sys.argv[1])
tok = train_tokenizer(TEXT, vocab_size=384, out_dir=out / "tok")
make_model(tok).save_pretrained(out / "model"); tok.save_pretrained(out / "model")
rows = [{"prompt": f"Q{i}\n", "completion": " word" * (1 + i % 5) + f" Answer: {i}"} for i in range(64 * 8)]
(out / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
PY
common="--model $OUT/model --data $OUT/d.jsonl --max-steps 4 --grad-accum 1 --learning-rate 1e-3 --lr-scheduler constant --logging-steps 1 --precision fp32 --no-group-by-length --max-grad-norm 1e9"
CUDA_VISIBLE_DEVICES=0 python -m forgetless.cli train $common --batch-size $((8 * N)) --output "$OUT/one" > "$OUT/one.log" 2>&1 \
  || { echo "one-process reference run failed: $OUT/one.log"; exit 1; }
status=0
for config in ddp fsdp deepspeed_zero3; do
  if [ "$config" = deepspeed_zero3 ] && ! python -c "import deepspeed" 2>/dev/null; then
    echo "deepspeed_zero3: SKIPPED (pip install deepspeed to check it)"; continue
  fi
  python - "$OUT" "$config" "$N" <<'PY'
import yaml, sys
out, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
values = yaml.safe_load(open(f"configs/accelerate/{name}.yaml"))
values["num_processes"] = n
yaml.safe_dump(values, open(f"{out}/{name}.yaml", "w"))
PY
  if python -m forgetless.cli train $common --batch-size 8 --launcher accelerate \
       --accelerate-config "$OUT/$config.yaml" --output "$OUT/$config" > "$OUT/$config.log" 2>&1; then
    python - "$OUT" "$config" "$N" <<'PY' || status=1
import json, math, sys
out, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rec = json.load(open(f"{out}/{name}/forgetless.json"))
one = json.load(open(f"{out}/one/forgetless.json"))
first = lambda r: next(e for e in r["log_history"] if "loss" in e)
ok = rec["resolved"]["world_size"] == n and math.isfinite(first(rec)["loss"])
same = abs(first(rec)["loss"] - first(one)["loss"]) <= 1e-5 * abs(first(one)["loss"])
from transformers import AutoModelForCausalLM
AutoModelForCausalLM.from_pretrained(f"{out}/{name}")
print(f"{name}: world_size {rec['resolved']['world_size']}, step-1 loss {first(rec)['loss']:.6f} vs one process "
      f"{first(one)['loss']:.6f} -> {'OK' if ok and same else 'MISMATCH'}")
sys.exit(0 if ok and same else 1)
PY
  else
    echo "$config: FAILED, see $OUT/$config.log"; status=1
  fi
done
python -m pytest -q -p no:cacheprovider tests/test_study_executors.py tests/test_accelerate_launch.py \
  > "$OUT/pytest.log" 2>&1 && echo "executor + launcher tests: OK" || { echo "tests FAILED: $OUT/pytest.log"; status=1; }
exit $status
