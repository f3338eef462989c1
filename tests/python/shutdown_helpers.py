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


def wait_until(condition, what: str, limit_s: float = HANG_TIMEOUT_S) -> None:
    """Returns once condition() holds, checking it between short yields of
    the CPU: a wait for an event, not a delay. The limit only turns a hang
    into a failure; nothing is timed."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


def waiting_in_next(loader, server) -> bool:
    """True once the pass's request for the stalled object is held by
    `server` (a StallServer) and a thread has waited inside loader's next():
    stats()'s stall_s (the consumer's time inside next()) grows after each
    of the slices next() waits in, so it is above 0 only once a call is in
    there, which on a stalled dataset stays there."""
    return server.held() > 0 and loader.stats()["stall_s"] > 0


STALLED_URI = "s3://stalled/stalled.jpg"


def stalled_manifest(root, good_paths, stall_at=0):
    """A CSV manifest of good_paths with STALLED_URI inserted at stall_at.

    Served by a StallServer, the read of that sample gets no answer until
    the server is released: the pipeline stalls on storage,
    deterministically, without any timing. Returns the manifest's path."""
    rows = [(p, 0) for p in good_paths]
    rows.insert(stall_at, (STALLED_URI, 0))
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w") as f:
        f.write("path,label\n")
        for p, label in rows:
            f.write(f"{p},{label}\n")
    return manifest


class StallServer:
    """An HTTP server in its own process (so it adds no threads to the
    process whose threads a test counts) that holds every object request
    until released: GET /__release__ (release(), or a child process calling
    release_url) makes held and later requests answer 200 with the bytes of
    `serve_file`. GET /__held__ (held(), held_url) answers how many object
    requests have arrived and are held: the server-side event a test waits
    for before it interrupts a stalled pass. Local stand-in for an object
    store that stopped answering.

    env() gives the AWS variables that point a stoker.Loader at it."""

    def __init__(self, serve_file):
        self.proc = subprocess.Popen([sys.executable, __file__, "stall-server", str(serve_file)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"stall server did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{int(line.split()[1])}"
        self.release_url = self.endpoint + "/__release__"
        self.held_url = self.endpoint + "/__held__"

    def env(self):
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "AKIDSTALL",
                "AWS_SECRET_ACCESS_KEY": "stall-secret", "AWS_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def release(self):
        import urllib.request
        with urllib.request.urlopen(self.release_url, timeout=30) as r:
            r.read()

    def held(self) -> int:
        import urllib.request
        with urllib.request.urlopen(self.held_url, timeout=30) as r:
            return int(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def _serve_stalled(serve_file):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = open(serve_file, "rb").read()
    released = threading.Event()
    held = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/__release__"):
                released.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.startswith("/__held__"):
                with lock:
                    count = str(held[0] if not released.is_set() else 0).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(count)))
                self.end_headers()
                self.wfile.write(count)
                return
            with lock:
                held[0] += 1
            released.wait()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


def run_python(code: str, *args, env=None, timeout=HANG_TIMEOUT_S):
    """Runs `code` in a fresh interpreter; a hang fails the test via the
    timeout. Returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        raise AssertionError(f"child hung ({timeout} s guard); stdout:\n{text(e.stdout)}\n"
                             f"stderr:\n{text(e.stderr)}") from None


def last_json(stdout: str):
    """The last line of stdout, parsed as JSON."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


if __name__ == "__main__" and sys.argv[1:2] == ["stall-server"]:
    _serve_stalled(sys.argv[2])
