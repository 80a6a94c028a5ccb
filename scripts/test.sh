#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One torch thread per process (the suite's own process sets it in conftest.py; this reaches the
# CLI subprocesses and workers the tests start): the tests' tiny models gain nothing from a second
# thread, and results then never depend on a machine's core count (measured on a quiet 2-core
# Intel Xeon: 770 s at one thread against 793 s with default threads).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# One pytest-xdist worker per core (-n 0 among the arguments runs in one process). Per-module times:
# python bench/suite_times.py.
.venv/bin/python -m pytest -q -n "${FORGETLESS_TEST_WORKERS:-auto}" "$@"
