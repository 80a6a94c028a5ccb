#!/usr/bin/env bash
# Creates bench/.venv-merge with mergekit 0.1.5 and lm-cocktail 0.0.4 from PyPI for
# bench/merge_bench.py. Those two (and what only they need: immutables, sentencepiece,
# protobuf) are installed into this venv only, never into the project's .venv.
#
# The venv sees the project venv's site-packages through a .pth file placed *after* its
# own site-packages, so torch/transformers/safetensors are shared (read-only) instead of
# pip pulling a second, several-GB CUDA build of torch from PyPI; anything pip installs
# here shadows the shared copy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
main_venv="${FORGETLESS_VENV:-$root/.venv}"
venv="$here/.venv-merge"
[ -x "$main_venv/bin/python" ] || { echo "merge_setup: $main_venv/bin/python not found (run scripts/setup.sh first)" >&2; exit 1; }
main_site="$("$main_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$main_venv/bin/python" -m venv "$venv"
bench_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$main_site" > "$bench_site/_forgetless_main_venv.pth"
# Pin torch to the shared build (e.g. 2.13.0+cpu -> torch==2.13.0): pip then treats it as
# installed and never pulls another torch (a CUDA wheel from PyPI) for mergekit or
# sentence-transformers.
torch_version="$("$main_venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
# lm-cocktail 0.0.4 imports sentence_transformers at import time without declaring it.
"$venv/bin/pip" install -q "torch==$torch_version" "mergekit==0.1.5" "lm-cocktail==0.0.4" sentence-transformers
"$venv/bin/python" -c "import mergekit, LM_Cocktail, torch; print('bench venv ready: torch', torch.__version__)"
