"""Rows of the bad-input and fault table in docs/behaviour.md.

Tests that feed stoker a bad input or a storage fault call
``record(category, case, outcome)`` once they have asserted what stoker did.
When STOKER_BEHAVIOUR_LOG names a file, each call appends one JSON line to it;
tools/render_behaviour.py turns those lines into the table. Without the
variable, recording does nothing, so the suites run the same either way.

Each row names the test that recorded it ("node"), and the conftests hook
``pytest_runtest_logreport`` (below) appends that test's result once it has
run: the table renders a row only when the whole test that recorded it
passed, so an assertion after the record() call still guards the row.
"""
from __future__ import annotations

import json
import os


def _append(row: dict) -> None:
    path = os.environ.get("STOKER_BEHAVIOUR_LOG")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def record(category: str, case: str, outcome: str, **details) -> None:
    if not os.environ.get("STOKER_BEHAVIOUR_LOG"):
        return
    row = {"category": category, "case": case, "outcome": outcome}
    # The test that asserted it ("tests/python/test_x.py::test_y[p] (call)").
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if current:
        row["test"] = current.split("::", 1)[0]
        row["node"] = current.rsplit(" (", 1)[0]
    row.update(details)
    _append(row)


def pytest_runtest_logreport(report) -> None:
    """pytest hook (re-exported by tests/python and tests/integration's
    conftest.py): the result of each test's body, which the renderer
    requires to be "passed" for the rows that test recorded."""
    if report.when == "call":
        _append({"node": report.nodeid, "result": report.outcome})
