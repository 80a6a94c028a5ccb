#!/usr/bin/env bash
# Create .venv and install forgetless with everything it needs, on a fresh machine.
# By default the exact versions in requirements.lock (the set the suite was run
# with; refresh it with scripts/lock.sh), so every fresh setup is the same.
# FORGETLESS_UNLOCKED=1 resolves pyproject.toml's ranges instead (the newest releases).
# torch is pinned either way to the CPU build pip finds locally: a range that
# admits newer releases would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${FORGETLESS_UNLOCKED:-0}" = 1 ]; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev,ray,lmeval,probes]"
else
  .venv/bin/python -m pip install --quiet -r requirements.lock
  .venv/bin/python -m pip install --quiet --no-deps -e .
  # Anything beyond the lock was installed by hand: say so.
  extra=$(comm -13 <(grep -v '^#' requirements.lock | sort) <(.venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' | sort) || true)
  [ -z "$extra" ] || echo "note: .venv holds packages beyond requirements.lock: $(echo $extra)" >&2
fi
.venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check >&2; exit 1; }
# Headless Chromium (Debian's package) renders the study report in a test.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (Debian) for the report rendering test..."
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
    || echo "warning: could not install chromium; the report rendering test will be skipped" >&2
fi
.venv/bin/python -c "import torch, transformers, forgetless; print(f'forgetless {forgetless.__version__}: torch {torch.__version__}, transformers {transformers.__version__}')"
