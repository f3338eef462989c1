"""Starts and stops the S3-compatible server (moto in server mode) and the
fault proxy on loopback, for the integration tests and bench/s3_bench.py.

Both run as separate processes, so they neither share the GIL with the
process under test nor hide their CPU time: cpu_seconds(pid) reads it from
/proc.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(proc: subprocess.Popen, port: int, what: str) -> None:
    # Bounded: 600 tries, 50 ms apart.
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on port {port}")


class Server:
    """A child process serving HTTP on 127.0.0.1:port."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_moto(env: dict | None = None) -> Server:
    """moto's S3 (and IAM) server. env: extra environment, e.g.
    INITIAL_NO_AUTH_ACTION_COUNT to turn on request authentication after that
    many requests."""
    port = free_port()
    child_env = {**os.environ, **CREDENTIALS, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(proc, port, "moto server")
    except Exception:
        proc.kill()
        raise
    return Server(proc, port)


def start_proxy(upstream_port: int, latency_ms: float = 0.0, fault_rate: float = 0.0,
                faults=("503", "500", "reset", "truncate"), seed: int = 0,
                fault_rates: dict | None = None, stall_s: float = 10.0,
                slow_s: float = 2.0, uvloop: bool = False, tls: tuple | None = None,
                trickle_s: float = 0.1, serve_dir=None, bucket: str = "bench",
                prefix: str = "") -> Server:
    """The fault proxy in front of 127.0.0.1:upstream_port. fault_rate is
    shared equally by `faults`; fault_rates ({"503": 0.1, "stall": 0.01})
    gives each kind its own rate instead. tls: (cert PEM, key PEM) to serve
    https (the Server's endpoint is then https://). serve_dir: be an
    in-memory S3 stub of that folder (bucket, prefix) instead of a proxy.
    The returned Server has .control, the port of the proxy's control
    interface (proxy_control)."""
    cmd = [sys.executable, str(HERE / "s3_fault_proxy.py"), "--upstream",
           f"127.0.0.1:{upstream_port}", "--latency-ms", str(latency_ms), "--fault-rate",
           str(fault_rate), "--faults", ",".join(faults), "--seed", str(seed),
           "--stall-s", str(stall_s), "--slow-s", str(slow_s)]
    if fault_rates:
        cmd += ["--fault-rates", ",".join(f"{k}={v}" for k, v in fault_rates.items())]
    if uvloop:
        cmd.append("--uvloop")
    if tls:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if trickle_s != 0.1:
        cmd += ["--trickle-s", str(trickle_s)]
    if serve_dir is not None:
        cmd += ["--serve-dir", str(serve_dir), "--bucket", bucket, "--prefix", prefix]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fault proxy did not start: {line!r}")
    words = line.split()
    port = int(words[1])
    _wait_listening(proc, port, "fault proxy")
    server = Server(proc, port)
    server.control = int(words[3])
    if tls:
        server.endpoint = f"https://127.0.0.1:{port}"
    # The readiness probe above is a connection too: wait until it is
    # counted, so a test's before/after counts see only its own.
    for _ in range(600):  # bounded: 600 tries, 10 ms apart
        if proxy_stats(server).get("connections", 1) >= 1:
            break
        time.sleep(0.01)
    return server


def proxy_control(proxy: Server, action: str, **query) -> dict:
    """POST /<action> on the proxy's control port: "gone" (mode="refuse" or
    "blackhole"), "back", "refuse" (match=, status=, code=[, times=]: answer
    matching requests with that S3 error) or "allow". Returns the proxy's
    counts."""
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    url = f"http://127.0.0.1:{proxy.control}/{action}" + (f"?{qs}" if qs else "")
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def stub_binary() -> Path | None:
    """The C++ in-memory S3 stub (bench/s3_stub.cc), built by `make build`
    into build/cpp, or STOKER_S3_STUB_BINARY; None where it is not built."""
    path = Path(os.environ.get("STOKER_S3_STUB_BINARY") or
                HERE.parents[1] / "build" / "cpp" / "s3_stub")
    return path if path.is_file() and os.access(path, os.X_OK) else None


def start_memory_s3(root, bucket: str, prefix: str, latency_ms: float = 0.0,
                    uvloop: bool = False, impl: str = "python",
                    bandwidth_bps: float = 0.0, tls: tuple | None = None) -> Server:
    """An in-memory S3 stub serving the files under root as
    s3://bucket/prefix<relative path> (no moto behind it). impl "python" is
    the fault proxy's stub mode; "cpp" is bench/s3_stub.cc (one epoll
    thread; a fraction of the Python stub's CPU per request). tls: (cert
    PEM, key PEM) to serve https (the Server's endpoint is then https://)."""
    if impl == "cpp":
        binary = stub_binary()
        if binary is None:
            raise RuntimeError("the C++ S3 stub is not built (make build)")
        cmd = [str(binary), "--dir", str(root), "--bucket", bucket, "--prefix", prefix,
               "--latency-ms", str(latency_ms)]
    else:
        cmd = [sys.executable, str(HERE / "s3_fault_proxy.py"), "--serve-dir", str(root),
               "--bucket", bucket, "--prefix", prefix, "--latency-ms", str(latency_ms)]
        cmd += ["--uvloop"] if uvloop else []
        cmd += ["--bandwidth-bps", str(bandwidth_bps)] if bandwidth_bps else []
    if tls:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"in-memory S3 stub ({impl}) did not start: {line!r}")
    port = int(line.split()[1])
    _wait_listening(proc, port, "in-memory S3 stub")
    server = Server(proc, port)
    if tls:
        server.endpoint = f"https://127.0.0.1:{port}"
    if impl == "python":
        server.control = int(line.split()[3])
    return server


def stub_stats(stub: Server, ca=None) -> dict:
    """The C++ stub's counts (GET /__stub__/stats): connections, requests,
    and over https tls_full, tls_resumed and tls_failures (handshakes made
    in full, resumed, failed). ca: the CA file that signed an https stub's
    certificate. The request is counted itself (a connection, a request,
    and over https a handshake)."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    with urllib.request.urlopen(stub.endpoint + "/__stub__/stats", timeout=30,
                                context=context) as r:
        return json.load(r)


def proxy_stats(proxy: Server) -> dict:
    """The proxy's counts (from its control port: they are there even when
    the proxy plays a server that is gone)."""
    port = getattr(proxy, "control", None)
    url = (f"http://127.0.0.1:{port}/stats" if port else proxy.endpoint + "/__proxy__/stats")
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def s3_client(endpoint: str, **kw):
    import boto3
    from botocore.config import Config

    args = dict(endpoint_url=endpoint, region_name="us-east-1",
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                config=Config(s3={"addressing_style": "path"},
                              max_pool_connections=32, retries={"max_attempts": 10}))
    args.update(kw)
    return boto3.client("s3", **args)


def upload_tree(client, bucket: str, root: Path, prefix: str, workers: int = 16) -> int:
    """Uploads every file under root (but hidden ones) as prefix + relative
    path; returns how many."""
    from concurrent.futures import ThreadPoolExecutor

    files = sorted(p for p in Path(root).rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))

    def put(p: Path):
        key = prefix + p.relative_to(root).as_posix()
        client.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, files))
    return len(files)
