"""S3 over https vs over http, in one run, on the same data and machine.

    .venv/bin/python bench/https_bench.py [--n-images 1000] [--latency-ms 20]
                                          [--epochs 3] [--rounds 1] [--stub cpp|python]
                                          [--configs ...] [--cold-starts N]
                                          [--server-cpus LIST] [--json]

Generates (or reuses) an ImageFolder of --n-images generated JPEGs, and
serves it from memory, path-style S3, twice on loopback: once over http,
once over https with a certificate from a CA made for the run
(tests/integration/tls_certs.py; the loader trusts it through --ca-bundle, a
copy of the system's bundle with the test CA appended, so loading it costs
what the system store costs). Both add --latency-ms to every request. The
server (--stub) is build/cpp/s3_stub (bench/s3_stub.cc: one epoll thread,
OpenSSL for https, sessions resumed from tickets or its cache; the default)
or, with --stub python, the fault proxy's stub mode
(tests/integration/s3_fault_proxy.py, on uvloop), which spends several
times the CPU per request and makes TLS handshakes on one Python thread.

Then runs `stoker bench s3://stub/<prefix>/ --endpoint-url ... --epochs N
--threads 2 --json` (each in a fresh process: a cold start) for:

  http          stoker's own epoll transport (the default for http://)
  http (curl)   STOKER_HTTP_TRANSPORT=curl: libcurl
  https         stoker's own epoll transport with OpenSSL (the default for
                https://): one CA store and session cache per loader, every
                ticket kept, at most 8 connections opening per host and
                at most 2 of them without a session to resume
  https (curl)  STOKER_HTTP_TRANSPORT=curl: libcurl with one CA store per
                loader and TLS sessions shared across its connections
  https (plain) libcurl with STOKER_CURL_TLS_REUSE=0: every connection sets
                TLS up from scratch (libcurl's defaults on Debian)

(--configs picks some) and prints, per configuration: epoch 0 images/s,
steady-state images/s (the median of the later epochs), CPU-ms per image in
epoch 0 (the loader process's), time to the first batch from Loader(), the
server's CPU-ms per request over the whole run (the stub's process, which
shares the machine's cores with the loader), with the C++ stub the TLS
handshakes it made in full and resumed per run, and the ratios of https to
http from the same run. --rounds repeats the runs, interleaved, and reports
medians.

The first batch of one `stoker bench` run is a single sample, and on a
shared machine it moves by +-30% from run to run. --cold-starts N adds N
cold starts per configuration, interleaved (http, https, http, ...; each a
fresh process that makes the Loader as `stoker bench` does and takes one
batch), and reports each configuration's median time to the first batch and
the median of its ratios to http's cold start of the same trial.

By default the server and the loader share the machine's cores, so the
server's TLS (encrypting every reply) slows the loader down too, which
S3's servers do not. --server-cpus 0 pins the server to CPU 0 and every
loader run to the other CPUs (taskset semantics, e.g. 0 or 0-1), so the
loader's rate reflects its own cost, as against a remote store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, UVLOOP, log  # also puts tests/integration on sys.path
from s3_servers import (CREDENTIALS, cpu_seconds, start_memory_s3, start_proxy,  # noqa: E402
                        stub_stats)
from tls_certs import make_certs  # noqa: E402

CONFIGS = {
    "http": ("http", {}),
    "http (curl)": ("http", {"STOKER_HTTP_TRANSPORT": "curl"}),
    "https": ("https", {}),
    "https (curl)": ("https", {"STOKER_HTTP_TRANSPORT": "curl"}),
    "https (plain)": ("https", {"STOKER_HTTP_TRANSPORT": "curl", "STOKER_CURL_TLS_REUSE": "0"}),
}


def parse_cpus(text):
    """'0,2-3' -> {0, 2, 3}."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def pin(pid, cpus):
    """Puts every thread of `pid` on `cpus`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def loader_cpus(args):
    """The CPUs loader runs are kept to: all but --server-cpus (None: all)."""
    if not args.server_cpus:
        return None
    rest = os.sched_getaffinity(0) - parse_cpus(args.server_cpus)
    if not rest:
        raise SystemExit(f"--server-cpus {args.server_cpus} leaves no CPU for the loader")
    return rest


def popen_kw(args):
    """subprocess.run's arguments that keep a loader run on args.loader_cpus."""
    cpus = args.loader_cpus
    return {"preexec_fn": (lambda: os.sched_setaffinity(0, cpus))} if cpus else {}


def run_stoker_bench(uri, endpoint, env_extra, args, ca_bundle, server_pid, stats=None):
    """One `stoker bench` run; stats(): the C++ stub's counts (None for the
    Python stub), read before and after it."""
    cmd = [str(Path(sys.executable).parent / "stoker"), "bench", uri, "--endpoint-url", endpoint,
           "--epochs", str(args.epochs), "--threads", str(args.threads), "--json",
           "--on-error", "raise"]
    if endpoint.startswith("https://"):
        cmd += ["--ca-bundle", str(ca_bundle)]
    env = {**os.environ, **CREDENTIALS, **env_extra}
    counts0 = stats() if stats else None
    server0 = cpu_seconds(server_pid)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                         **popen_kw(args))
    server_cpu = cpu_seconds(server_pid) - server0
    counts = stats() if stats else None
    # The second stats request counts itself: a connection, over https with
    # a full handshake.
    own = {"connections": 1, "tls_full": 1 if endpoint.startswith("https://") else 0}
    r = json.loads(out.stdout)
    e = r["epochs"]
    later = [x["images_per_s"] for x in e[1:]] or [e[0]["images_per_s"]]
    return {"epoch0_ips": e[0]["images_per_s"], "steady_ips": statistics.median(later),
            "epoch0_cpu_ms": e[0]["cpu_s_per_image"] * 1e3, "first_batch_s": r["first_batch_s"],
            "server_cpu_ms": server_cpu * 1e3 / r["requests"],
            "epochs_ips": [x["images_per_s"] for x in e], "requests": r["requests"],
            "retries": r["retries"],
            "handshakes": ({k: counts[k] - counts0[k] - own.get(k, 0)
                            for k in ("connections", "tls_full", "tls_resumed", "tls_failures")}
                           if counts else None)}


# One cold start: the Loader `stoker bench` makes (its defaults), and the
# time from Loader() to the first batch.
COLD_START = r"""
import json, sys, time
import stoker
uri, endpoint, ca_bundle, threads = sys.argv[1:5]
kw = dict(endpoint_url=endpoint, ca_bundle=ca_bundle) if ca_bundle else dict(endpoint_url=endpoint)
t0 = time.perf_counter()
loader = stoker.Loader(uri, batch_size=64, transform=stoker.transforms.imagenet_train(224),
                       shuffle=True, seed=0, threads=int(threads), on_error="raise",
                       prefetch_batches=3, **kw)
next(iter(loader))
print(json.dumps({"first_batch_s": time.perf_counter() - t0}))
"""


def cold_start(uri, endpoint, env_extra, args, ca_bundle):
    """Seconds from Loader() to the first batch, in a fresh process."""
    env = {**os.environ, **CREDENTIALS, **env_extra}
    bundle = str(ca_bundle) if endpoint.startswith("https://") else ""
    out = subprocess.run([sys.executable, "-c", COLD_START, uri, endpoint, bundle,
                          str(args.threads)], env=env, check=True, capture_output=True, text=True,
                         **popen_kw(args))
    return json.loads(out.stdout)["first_batch_s"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(REPO / "data" / "https-bench"),
                    help="the generated ImageFolder (made there if missing)")
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="which of: " + ", ".join(CONFIGS))
    ap.add_argument("--stub", choices=("cpp", "python"), default="cpp",
                    help="the in-memory S3 server: build/cpp/s3_stub (default) or the fault "
                         "proxy's stub mode")
    ap.add_argument("--cold-starts", type=int, default=0,
                    help="also this many cold starts (Loader() to the first batch) per "
                         "configuration, interleaved")
    ap.add_argument("--server-cpus", default="",
                    help="pin the server to these CPUs (e.g. 0) and the loader to the others; "
                         "default: both share every CPU")
    ap.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    args = ap.parse_args(argv)
    args.loader_cpus = loader_cpus(args)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            ap.error(f"unknown config {c!r}")

    from stoker import datagen

    root = datagen.make_imagefolder(args.root, n_images=args.n_images, verbose=True)
    prefix = "train/"
    uri = f"s3://stub/{prefix}"
    results = {c: [] for c in configs}
    load0 = os.getloadavg()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stoker-https-bench-")))
        certs = make_certs(tmp / "certs")
        # The system's bundle plus the test CA: loading it costs what the
        # system store does.
        bundle = tmp / "bundle.pem"
        system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
        with open(bundle, "wb") as out:
            if os.path.isfile(system):
                with open(system, "rb") as f:
                    shutil.copyfileobj(f, out)
            out.write(b"\n" + certs.ca.read_bytes())
        if args.stub == "cpp":
            servers = {
                "http": stack.enter_context(start_memory_s3(root, "stub", prefix, args.latency_ms,
                                                            impl="cpp")),
                "https": stack.enter_context(start_memory_s3(root, "stub", prefix,
                                                             args.latency_ms, impl="cpp",
                                                             tls=certs.good)),
            }
        else:
            servers = {
                "http": stack.enter_context(start_proxy(0, latency_ms=args.latency_ms,
                                                        uvloop=UVLOOP, serve_dir=root,
                                                        bucket="stub", prefix=prefix)),
                "https": stack.enter_context(start_proxy(0, latency_ms=args.latency_ms,
                                                         uvloop=UVLOOP, serve_dir=root,
                                                         bucket="stub", prefix=prefix,
                                                         tls=certs.good)),
            }
        if args.server_cpus:
            for server in servers.values():
                pin(server.proc.pid, parse_cpus(args.server_cpus))
        for rnd in range(args.rounds):
            for c in configs:
                scheme, env_extra = CONFIGS[c]
                server = servers[scheme]
                stats = ((lambda s=server: stub_stats(s, certs.ca)) if args.stub == "cpp"
                         else None)
                r = run_stoker_bench(uri, server.endpoint, env_extra, args, bundle,
                                     server.proc.pid, stats)
                results[c].append(r)
                h = r["handshakes"]
                log(f"round {rnd} {c:>14}: epochs " +
                    ", ".join(f"{x:,.0f}" for x in r["epochs_ips"]) +
                    f" img/s; epoch 0 {r['epoch0_cpu_ms']:.2f} CPU-ms/img; first batch "
                    f"{r['first_batch_s']:.3f} s; {r['requests']} requests, {r['retries']} retries"
                    + (f"; {h['connections']} connections" if h else "")
                    + (f", TLS handshakes {h['tls_full']} full, {h['tls_resumed']} resumed, "
                       f"{h['tls_failures']} failed" if h and scheme == "https" else ""))
        colds = {c: [] for c in configs}
        for trial in range(args.cold_starts):
            for c in configs:
                scheme, env_extra = CONFIGS[c]
                colds[c].append(cold_start(uri, servers[scheme].endpoint, env_extra, args, bundle))
            log(f"cold start {trial}: " + ", ".join(f"{c} {colds[c][-1]:.3f} s" for c in configs))
    load1 = os.getloadavg()

    keys = ("epoch0_ips", "steady_ips", "epoch0_cpu_ms", "first_batch_s")
    med = {c: {k: statistics.median(r[k] for r in rs) for k in keys + ("server_cpu_ms",)}
           for c, rs in results.items()}
    stub = "build/cpp/s3_stub" if args.stub == "cpp" else "the Python stub"
    print(f"S3 path-style GETs of {args.n_images} generated JPEGs from an in-memory stub "
          f"({stub}) on loopback, +{args.latency_ms:g} ms per request; stoker bench --epochs {args.epochs} "
          f"--threads {args.threads}; {os.cpu_count()} CPUs"
          + (f" (server on CPU {args.server_cpus}, loader on CPU "
             f"{','.join(map(str, sorted(args.loader_cpus)))})" if args.server_cpus else "")
          + f", load average {load0[0]:.1f} before, "
          f"{load1[0]:.1f} after; medians of {args.rounds} round(s)\n")
    print("| | epoch 0 img/s | steady img/s | CPU-ms/img, epoch 0 | first batch s "
          "| server CPU-ms/request |")
    print("|---|---:|---:|---:|---:|---:|")
    for c, m in med.items():
        print(f"| {c} | {m['epoch0_ips']:,.0f} | {m['steady_ips']:,.0f} | {m['epoch0_cpu_ms']:.2f} "
              f"| {m['first_batch_s']:.3f} | {m['server_cpu_ms']:.2f} |")
    print()
    targets = {"epoch0_ips": ">= 0.9", "steady_ips": ">= 0.95", "epoch0_cpu_ms": "<= 1.2",
               "first_batch_s": "<= 1.3"}
    for https in [c for c in ("https", "https (curl)", "https (plain)") if c in med]:
        for http in [c for c in ("http (curl)", "http") if c in med]:
            parts = [f"{k} {med[https][k] / med[http][k]:.2f}x (target {targets[k]})" for k in keys]
            print(f"{https} / {http}: " + "; ".join(parts))
    if args.cold_starts:
        print(f"\nCold starts, {args.cold_starts} per configuration, interleaved: Loader() to the "
              "first batch, median; and the median of the ratios to http's in the same trial")
        for c in configs:
            line = f"{c}: {statistics.median(colds[c]):.3f} s"
            if "http" in colds and c != "http":
                ratios = [x / h for x, h in zip(colds[c], colds["http"])]
                line += f", {statistics.median(ratios):.2f}x http's"
                if len(ratios) >= 4:
                    q = statistics.quantiles(ratios, n=4)
                    line += f" (quartiles {q[0]:.2f}x, {q[2]:.2f}x)"
            print(line)
    if args.json:
        print(json.dumps({"runs": results, "medians": med, "cold_starts": colds,
                          "loadavg_before": load0, "loadavg_after": load1}))


if __name__ == "__main__":
    sys.exit(main())
