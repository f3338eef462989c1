"""Rows of the bad-input and fault table in docs/behaviour.md.

Tests that feed stoker a bad input or a storage fault call
``record(category, case, outcome)`` once they have asserted what stoker did.
When STOKER_BEHAVIOUR_LOG names a file, each call appends one JSON line to it;
tools/render_behaviour.py turns those lines into the table. Without the
variable, recording does nothing, so the suites run the same either way.
"""
from __future__ import annotations

import json
import os


def record(category: str, case: str, outcome: str, **details) -> None:
    path = os.environ.get("STOKER_BEHAVIOUR_LOG")
    if not path:
        return
    row = {"category": category, "case": case, "outcome": outcome}
    # The test file that asserted it ("tests/python/test_x.py::test_y[p] (call)").
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if current:
        row["test"] = current.split("::", 1)[0]
    row.update(details)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
