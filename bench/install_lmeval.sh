#!/usr/bin/env bash
# Install the optional lm-eval extra into the active environment without touching torch:
# the installed torch is pinned by a constraints file, so pip cannot swap it for a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
constraints=$(mktemp)
python -m pip freeze | grep -i '^torch==' > "$constraints"
python -m pip install -e ".[lmeval]" -c "$constraints"
python -c "import torch, lm_eval; print('torch', torch.__version__, '| lm-eval ok')"
rm -f "$constraints"
