#!/usr/bin/env bash
# Refresh requirements.lock: resolve forgetless's dependencies (pyproject.toml, with
# the dev, ray, lmeval and probes extras) afresh in a throwaway virtualenv and freeze the exact versions.
# scripts/setup.sh installs the lock, so every fresh setup gets the same package set.
# After refreshing, run `bash scripts/test.sh` and commit the lock with the result.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: a range that admits newer releases pulls the CUDA packages.
"$tmp/venv/bin/python" -m pip install --quiet "torch==2.13.0"
# The dev, ray, lmeval and probes extras: the suite runs the Ray executor's equivalence test, the
# lm-eval adapter's tests and the probes' tests. FORGETLESS_LOCK_KEEP=1 keeps every version already locked (only
# new packages are resolved), for adding an extra without moving the rest.
keep=()
[ "${FORGETLESS_LOCK_KEEP:-0}" = 1 ] && keep=(-c requirements.lock)
"$tmp/venv/bin/python" -m pip install --quiet -e ".[dev,ray,lmeval,probes]" "${keep[@]}"
{
  echo "# The exact package set the test suite runs with; scripts/setup.sh installs it."
  echo "# Refresh with: bash scripts/lock.sh  (then run bash scripts/test.sh and commit)."
  echo "# Resolved $(date -u +%Y-%m-%d) with Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())') on $(uname -m) (extras dev, ray, lmeval, probes)."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e '
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
