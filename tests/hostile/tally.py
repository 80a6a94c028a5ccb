"""The hostile suite's tally: cases per class of issue 34 and how many pass, printed at the end of a run.

Its hooks are imported into ``tests/conftest.py``: under pytest-xdist only the controller prints the summary, and
the controller loads that conftest (it collects nothing, so a conftest under ``tests/hostile/`` would not be seen).
Each case's class travels with its report as a user property, which xdist carries from the worker.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.hostile.harness import CLASSES, Case

_PASSED: Counter[str] = Counter()
_RAN: Counter[str] = Counter()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Label every hostile case's item with its class."""
    for item in items:
        c = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if isinstance(c, Case):
            item.user_properties.append(("hostile_class", c.klass))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count a case once: failed in any phase, or passed in its call."""
    klass = dict(report.user_properties).get("hostile_class")
    if klass is None or report.skipped:
        return
    if report.failed or report.when == "call":
        _RAN[klass] += 1
        _PASSED[klass] += report.passed and report.when == "call"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The tally table, when any hostile case ran."""
    if not _RAN:
        return
    terminalreporter.section("hostile-input tally (issue 34)")
    for klass, title in CLASSES.items():
        if _RAN[klass]:
            terminalreporter.write_line(f"{title:<45} {_PASSED[klass]:>4} / {_RAN[klass]:<4} pass")
    terminalreporter.write_line(f"{'all':<45} {sum(_PASSED.values()):>4} / {sum(_RAN.values()):<4} pass")
