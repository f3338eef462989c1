"""Helpers for the shutdown and fork tests: thread counts, stalled datasets,
and child Python processes with a hang-detecting timeout."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

# Generous: only a hang gets anywhere near it.
HANG_TIMEOUT_S = 120


def native_threads() -> int:
    """Threads of this process, native ones included (stoker's are not
    Python threads)."""
    return len(os.listdir("/proc/self/task"))


def threads_after_join(expected: int, timeout: float = 30.0) -> int:
    """Thread count once it reaches `expected`, or after `timeout` (a hang).

    A joined thread can stay listed in /proc for a moment: join returns when
    the kernel clears its tid, a little before the task is reaped. So the
    count is polled; the generous timeout only detects threads that are
    never joined."""
    deadline = time.monotonic() + timeout
    n = native_threads()
    while n != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        n = native_threads()
    return n


def stalled_manifest(root, good_paths, fifo_at=0):
    """A CSV manifest of good_paths with a FIFO inserted at position fifo_at.

    Hold a writer open on the FIFO (hold_writer) and the read of that sample
    waits for data that never comes: the pipeline stalls on storage,
    deterministically, without any timing. Returns (manifest, fifo)."""
    fifo = os.path.join(root, "stalled.jpg")
    os.mkfifo(fifo)
    rows = [(p, 0) for p in good_paths]
    rows.insert(fifo_at, (fifo, 0))
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w") as f:
        f.write("path,label\n")
        for p, label in rows:
            f.write(f"{p},{label}\n")
    return manifest, fifo


def hold_writer(fifo) -> int:
    """An fd that keeps `fifo` open for writing (O_RDWR never blocks on
    Linux): a reader then waits for data instead of seeing end of file."""
    return os.open(fifo, os.O_RDWR | os.O_NONBLOCK)


def run_python(code: str, *args, env=None, timeout=HANG_TIMEOUT_S):
    """Runs `code` in a fresh interpreter; a hang fails the test via the
    timeout. Returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def last_json(stdout: str):
    """The last line of stdout, parsed as JSON."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])
