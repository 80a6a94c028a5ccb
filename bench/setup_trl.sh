#!/usr/bin/env bash
# A separate venv for bench/vs_trl.py: TRL is a benchmark-only tool, never part of the
# core install. The venv sees the project's .venv packages (torch, transformers, ...)
# through a .pth file, so pip adds only TRL and what it needs beyond them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv-trl
[ -x .venv/bin/python ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
python3 -m venv "$VENV"
CORE_SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
BENCH_SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# addsitedir (not a bare path) so the core venv's own .pth files, e.g. the editable forgetless install, load too
echo "import site; site.addsitedir('$CORE_SITE')" > "$BENCH_SITE/forgetless-core.pth"
"$VENV/bin/pip" install -q "trl==1.16.0"
"$VENV/bin/python" -c "import trl, torch, forgetless; print('trl', trl.__version__, 'torch', torch.__version__)"
