"""tools/render_behaviour.py: the recorded rows become docs/behaviour.md."""
import importlib.util
import json

import pytest
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "tools" / "render_behaviour.py"
_spec = importlib.util.spec_from_file_location("render_behaviour", _path)
render_behaviour = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_behaviour)


def write_log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


ROWS = [
    {"category": "manifest", "case": "b", "outcome": "error 'x|y' at /tmp/pytest-of-root/pytest-7/"
     "test_b0/m.csv:2", "test": "tests/python/test_m.py"},
    {"category": "image file", "case": "z", "outcome": "skipped", "test": "tests/python/test_a.py"},
    # The same outcome from another run's temporary folder and port: one row.
    {"category": "manifest", "case": "b", "outcome": "error 'x|y' at /tmp/pytest-of-root/pytest-9/"
     "test_b1/m.csv:2", "test": "tests/python/test_m.py"},
    {"category": "storage", "case": "503", "outcome": "retried at 127.0.0.1:41234 then /tmp/tmpab12_x9q/f",
     "test": "tests/integration/test_s3.py"},
    {"category": "storage", "case": "503", "outcome": "retried at 127.0.0.1:5000 then /tmp/tmpzz99aa11/f",
     "test": "tests/integration/test_s3.py"},
    {"category": "Image file", "case": "a", "outcome": "decoded"},
    # Another TMPDIR: the same row again.
    {"category": "manifest", "case": "b", "outcome": "error 'x|y' at /var/tmp/ci/pytest-of-ci/"
     "pytest-1/test_b0/m.csv:2", "test": "tests/python/test_m.py"},
    {"category": "storage", "case": "503", "outcome": "retried at 127.0.0.1:41234 then "
     "/var/tmp/ci/tmpq1w2e3r4/f", "test": "tests/integration/test_s3.py"},
]


def test_rows_are_normalised_deduplicated_and_sorted(tmp_path):
    log = tmp_path / "log.jsonl"
    write_log(log, ROWS)
    text = render_behaviour.render(log, "2030-01-02")
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert table == [
        "| category | case | what stoker does | tested in |",
        "| Image file | a | decoded |  |",
        "| image file | z | skipped | `test_a.py` |",
        "| manifest | b | error 'x\\|y' at <tmp>/m.csv:2 | `test_m.py` |",
        "| storage | 503 | retried at 127.0.0.1:<port> then <tmp>/f | `test_s3.py` |",
    ]
    assert "Generated on 2030-01-02 from 4 rows recorded by:" in text
    for f in ("tests/integration/test_s3.py", "tests/python/test_a.py", "tests/python/test_m.py"):
        assert f"- `{f}`" in text


def test_check_ignores_the_date_but_not_the_rows(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    write_log(log, ROWS)
    md = tmp_path / "behaviour.md"
    assert render_behaviour.main([str(log), "--out", str(md)]) == 0
    md.write_text(md.read_text().replace(
        next(line for line in md.read_text().splitlines() if line.startswith("Generated on ")),
        "Generated on 1999-12-31 from 4 rows recorded by:"))
    assert render_behaviour.main([str(log), "--check", str(md)]) == 0
    write_log(log, [r for r in ROWS if r["case"] != "a"])  # a case no test records any more
    assert render_behaviour.main([str(log), "--check", str(md)]) == 1
    err = capsys.readouterr().err
    assert "-| Image file | a | decoded |  |" in err
    assert "Run `make docs-behaviour`" in err


def test_an_empty_log_is_an_error(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("")
    assert render_behaviour.main([str(log), "--check", str(tmp_path / "x.md")]) == 1


def test_a_row_counts_only_if_its_test_passed(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    passed = {"category": "c", "case": "asserted", "outcome": "o", "test": "tests/python/t.py",
              "node": "tests/python/t.py::test_a"}
    write_log(log, [passed, {"node": "tests/python/t.py::test_a", "result": "passed"}])
    text = render_behaviour.render(log, "2030-01-02")
    assert "| c | asserted | o | `t.py` |" in text
    # Recorded, then an assertion after record() failed: an error, naming it.
    failed = dict(passed, case="then failed", node="tests/python/t.py::test_b")
    write_log(log, [passed, {"node": "tests/python/t.py::test_a", "result": "passed"},
                    failed, {"node": "tests/python/t.py::test_b", "result": "failed"}])
    with pytest.raises(SystemExit) as e:
        render_behaviour.render(log, "2030-01-02")
    assert "tests/python/t.py::test_b (failed): then failed" in str(e.value)
    # A test that never reported (it crashed the session) asserted nothing either.
    write_log(log, [dict(passed, node="tests/python/t.py::test_c")])
    with pytest.raises(SystemExit) as e:
        render_behaviour.render(log, "2030-01-02")
    assert "(no result)" in str(e.value)
