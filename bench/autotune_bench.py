"""The Loader's default settings against a grid of explicit ones, in one run.

    .venv/bin/python bench/autotune_bench.py [--setups local,s3-20ms,s3-100ms,bw-50MBs,consumer]
        [--seconds 10] [--warmup 2] [--default-warmup 20] [--rounds 1]
        [--threads-grid 1,2,3,4] [--prefetch-grid 1,2,4,8]
        [--demo] [--memory [--budgets none,512MB,1GB,2GB,4GB,default]] [--data DIR] [--json]

Each run is one fresh Loader(uri, batch_size=64, shuffle=True,
transform=imagenet_train(224, normalize=True)) read epoch after epoch
(set_epoch each) in a process forked for it; its rate is what it delivered
over --seconds (10) after a warm-up: --warmup (2 s) for an explicit
setting, --default-warmup (20 s) for the default, which must have found
its settings by then (the target: 95% of the best explicit setting within
30 s). The default's rate from its start (Loader() on) is reported beside
it. Configurations per set-up:

  default   no threads= and no prefetch_batches= argument: whatever the
            Loader does by default (autotuning, where it does)
  t=T p=P   threads=T, prefetch_batches=P for T in --threads-grid and P in
            --prefetch-grid
  today     threads=<usable cores>, prefetch_batches=2: the defaults before
            autotuning (the grid's run where the grid holds it)

--rounds repeats every configuration, interleaved (each round in a rotated
order, so drift hits all alike); medians over rounds. Set-ups (--setups):

  local      the generated ImageFolder (--data, default data/demo-imagefolder:
             `make demo`'s 2,000 ImageNet-sized JPEGs) on local disk, page
             cache warm; the consumer takes batches as fast as it can.
  s3-<N>ms   the same files served by the in-memory S3 stub
             (build/cpp/s3_stub, bench/s3_stub.cc) with N ms added to every
             request; s3-20ms and s3-100ms by default.
  bw-<N>MBs  the same files from the Python stub (the fault proxy's stub
             mode) whose replies share one N MB/s link; bw-50MBs by default.
  consumer   local disk, and a training step that busy-spins one core (a
             Python loop, holding the GIL) for --step-factor (2) x the
             loader's batch time: batch_size / the best local rate of this
             run, or, without `local`, of a short calibration run with
             threads=<usable cores>. Rates are steps/s.
  demo       (or --demo) `make demo`'s data and transform, default against
             threads in --threads-grid at the default prefetch_batches:
             target default >= the best fixed thread count.

Per set-up: the best explicit setting (the grid's and today's) and its
rate, the default's rate and the ratio (target >= 0.95; consumer: steps/s,
>= 0.98), a table of the grid's rates, the memory held in prefetched
batches at its peak, for the default and for `today`
(stats()["memory.batch_buffers_peak_bytes"] where the loader reports it,
else one batch's bytes x stats()["memory.batch_buffers"], else x
(prefetch_batches + 2)), and the default's settings over time:
loader.threads and every stats() key starting with "autotune.", read once
a second; the final ones and when they last changed. Runs take about
(grid x (--warmup + --seconds) + --default-warmup + --seconds) x --rounds
per set-up: 21 minutes for the five default set-ups with the default
16-setting grid.

--memory: for each --budgets entry (a size; none: no budget; default: no
memory_budget argument), a fresh interpreter loads --data with that
memory_budget, batches of --mem-batch imagenet_train(--mem-size) uint8
images, prefetch_batches=--mem-prefetch (default: no argument) and a
consumer that sleeps --mem-step-s per batch, for --mem-seconds: the peak
resident memory over what the process held after `import stoker` (VmRSS
sampled every 20 ms, and VmHWM reset at the start where the kernel allows),
against the budget the loader took (stats()["memory.budget_bytes"] for
default). --memory alone runs only that; with --setups both.

Prints the command line, the machine and Markdown tables; --json also one
JSON object with every run.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import multiprocessing
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
import traceback

from _common import REPO, UVLOOP, default_stub, log  # also puts tests/integration on sys.path
from s3_servers import CREDENTIALS, cpu_seconds, start_memory_s3  # noqa: E402

import stoker  # noqa: E402
from stoker import _measure as measure  # noqa: E402
from stoker.cli import demo  # noqa: E402

DEFAULT_SETUPS = "local,s3-20ms,s3-100ms,bw-50MBs,consumer"
# The default's settings, whose last change "settled after" reports:
# loader.threads and each autotune.<name> key of stats() named after an
# argument of Loader() (autotune.threads, autotune.prefetch_batches, ...);
# the other autotune.* keys (rates, counts, flags) are printed, not watched.
LOADER_ARGS = frozenset(inspect.signature(stoker.Loader.__init__).parameters) - {"self"}
PEAK_KEY = "memory.batch_buffers_peak_bytes"
BUCKET, PREFIX = "bench", "data/"


# ---------------------------------------------------------------- one run
# Everything in this section runs in the child process of one run.

def spin(seconds):
    """A training step that keeps one core busy: a pure Python loop, the
    GIL held (the loader's threads do not need it)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def batch_nbytes(batch):
    """The bytes of one batch's tensors (torch or NumPy)."""
    n = 0
    for v in batch.values():
        nb = getattr(v, "nbytes", None)
        if isinstance(nb, int):
            n += nb
    return n


def watched(loader, t):
    """One sample of the settings: time, loader.threads, the plan's and
    every autotune.* key of stats()."""
    s = loader.stats()
    row = {"t": round(t, 3), "threads": loader.threads}
    for k, v in s.items():
        if k.startswith(("autotune.", "memory.")):
            row[k] = v
    return row


def timed_run(spec):
    """One Loader read for spec["seconds"] from its construction; returns
    what it delivered and what it held."""
    tf = stoker.transforms.imagenet_train(spec["size"], normalize=spec["normalize"])
    kw = dict(spec["loader_kwargs"])
    if spec.get("endpoint"):
        kw["endpoint_url"] = spec["endpoint"]
    seconds, step_s = spec["seconds"], spec.get("step_s", 0.0)
    warmup = spec.get("warmup_s", 0.0)
    seconds += warmup
    at_warm = None  # (t, images, batches) when the warm-up ended
    cpu0 = sum(os.times()[:2])
    t0 = time.perf_counter()
    loader = stoker.Loader(spec["uri"], batch_size=spec["batch_size"], transform=tf,
                           shuffle=True, seed=0, on_error="raise", **kw)
    open_s = time.perf_counter() - t0
    samples = [watched(loader, open_s)]
    next_sample = 1.0
    images = batches = epoch = 0
    first_batch_s = None
    batch_bytes = 0
    now = t0
    done = False
    while not done:
        loader.set_epoch(epoch)
        got = 0
        for batch in loader:
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - t0
                batch_bytes = batch_nbytes(batch)
            n = int(batch["label"].shape[0])
            del batch
            if step_s:
                spin(step_s)
            now = time.perf_counter()
            images += n
            batches += 1
            got += n
            if at_warm is None and now - t0 >= warmup:
                at_warm = (now - t0, images, batches)
            if now - t0 >= next_sample:
                samples.append(watched(loader, now - t0))
                while next_sample <= now - t0:
                    next_sample += 1.0
            if now - t0 >= seconds:
                done = True
                break
        if got == 0:
            raise RuntimeError(f"{spec['uri']}: epoch {epoch} delivered no samples")
        epoch += 1
    elapsed = now - t0
    samples.append(watched(loader, elapsed))
    stats = loader.stats()
    loader.close()
    cpu = sum(os.times()[:2]) - cpu0
    final = {k: v for k, v in stats.items()
             if k.startswith(("autotune.", "memory.")) or
             k in ("stall_s", "samples_delivered", "requests", "bytes_read", "retries")}
    tw, iw, bw = at_warm if at_warm and elapsed > at_warm[0] else (0.0, 0, 0)
    return {"images": images, "batches": batches, "epochs": epoch, "elapsed_s": elapsed,
            "from_start_images_per_s": images / elapsed,
            "from_start_steps_per_s": batches / elapsed,
            # After the warm-up: the rate the settings reached.
            "images_per_s": (images - iw) / (elapsed - tw),
            "steps_per_s": (batches - bw) / (elapsed - tw), "warmup_s": tw,
            "open_s": open_s, "first_batch_s": first_batch_s, "batch_bytes": batch_bytes,
            "cpu_s": cpu, "samples": samples, "final": final}


def _child(conn, fn, args):
    try:
        conn.send((True, fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def forked(fn, *args):
    """fn(*args) in a process forked for it: each run starts from the state
    `import stoker` leaves, without paying for the import again."""
    ctx = multiprocessing.get_context("fork")
    sys.stdout.flush()  # else the child would print what is buffered again
    sys.stderr.flush()
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(w, fn, args))
    p.start()
    w.close()
    try:
        ok, value = r.recv()
    except EOFError:
        ok, value = False, None
    p.join()
    if not ok:
        raise RuntimeError(value or f"the run's process exited with {p.exitcode}")
    return value


# ------------------------------------------------------- configurations

def config_name(kw):
    if not kw:
        return "default"
    t, p = kw.get("threads", "-"), kw.get("prefetch_batches", "-")
    return f"t={t} p={p}" if "prefetch_batches" in kw else f"t={t}"


def prefetch_of(kw):
    """prefetch_batches a configuration asked for (2 for the default: the
    Loader's default before autotuning)."""
    return kw.get("prefetch_batches", 2)


def peak_batch_memory(run, kw):
    """(bytes, source): the memory held in prefetched batches at its peak."""
    peaks = [s[PEAK_KEY] for s in run["samples"] if PEAK_KEY in s]
    if PEAK_KEY in run["final"]:
        peaks.append(run["final"][PEAK_KEY])
    if peaks:
        return max(peaks), "stats"
    buffers = [s["memory.batch_buffers"] for s in run["samples"] if "memory.batch_buffers" in s]
    if buffers:
        return run["batch_bytes"] * max(buffers), "plan"
    return run["batch_bytes"] * (prefetch_of(kw) + 2), "settings"


def knobs(sample):
    """What counts as the default's settings in one sample."""
    out = {"threads": sample["threads"]}
    for k, v in sample.items():
        if k.startswith("autotune.") and k[len("autotune."):] in LOADER_ARGS:
            out[k] = v
    return out


def settled_after(samples):
    """Seconds from Loader() to the sample where the settings were last seen
    to change (the first sample's time when they never did)."""
    t = samples[0]["t"]
    for prev, cur in zip(samples, samples[1:]):
        if knobs(cur) != knobs(prev):
            t = cur["t"]
    return t


def parse_setup(name):
    if name in ("local", "consumer", "demo"):
        return {"name": name, "kind": name}
    m = re.fullmatch(r"s3-(\d+(?:\.\d+)?)ms", name)
    if m:
        return {"name": name, "kind": "s3", "latency_ms": float(m.group(1))}
    m = re.fullmatch(r"bw-(\d+(?:\.\d+)?)MBs", name)
    if m:
        return {"name": name, "kind": "bw", "mbs": float(m.group(1))}
    raise ValueError(f"unknown set-up {name!r}: local, s3-<N>ms, bw-<N>MBs, consumer or demo")


def int_list(s):
    try:
        out = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma list of integers, got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"a comma list of positive integers, got {s!r}")
    return out


# ------------------------------------------------------------ set-ups

class Setup:
    """One set-up's configurations, runs and summary."""

    def __init__(self, spec, args, cores):
        self.spec, self.args, self.cores = spec, args, cores
        self.name, self.kind = spec["name"], spec["kind"]
        self.metric = "steps_per_s" if self.kind == "consumer" else "images_per_s"
        self.unit = "steps/s" if self.kind == "consumer" else "img/s"
        self.target = {"consumer": 0.98, "demo": 1.0}.get(self.kind, 0.95)
        self.configs = {"default": {}}
        if self.kind == "demo":
            for t in args.threads_grid:
                self.configs[config_name({"threads": t})] = {"threads": t}
        else:
            for t in args.threads_grid:
                for p in args.prefetch_grid:
                    kw = {"threads": t, "prefetch_batches": p}
                    self.configs[config_name(kw)] = kw
        self.in_grid = set(self.configs) - {"default"}
        self.today = {"threads": cores, "prefetch_batches": 2}
        self.today_name = config_name(self.today)
        if self.kind != "demo" and self.today_name not in self.configs:
            self.configs[self.today_name] = self.today
        self.runs = {name: [] for name in self.configs}
        self.server_cpu_s = {name: [] for name in self.configs}
        self.step_s = 0.0
        self.calibration = None

    def grid_names(self):
        return [n for n in self.configs if n != "default"]

    def run_all(self, root, local_best_rate=None):
        a = self.args
        base = {"seconds": a.seconds, "batch_size": a.batch_size, "size": a.size,
                "normalize": a.normalize}
        with contextlib.ExitStack() as stack:
            server = None
            if self.kind in ("local", "consumer", "demo"):
                uri, endpoint = str(root), None
            elif self.kind == "s3":
                server = stack.enter_context(start_memory_s3(
                    root, BUCKET, PREFIX, self.spec["latency_ms"], uvloop=UVLOOP, impl=a.stub))
                uri, endpoint = f"s3://{BUCKET}/{PREFIX}", server.endpoint
            else:
                server = stack.enter_context(start_memory_s3(
                    root, BUCKET, PREFIX, 0.0, uvloop=UVLOOP, impl="python",
                    bandwidth_bps=self.spec["mbs"] * 1e6))
                uri, endpoint = f"s3://{BUCKET}/{PREFIX}", server.endpoint
            if self.kind == "consumer":
                self.calibrate(base, uri, local_best_rate)
            names = list(self.configs)
            for rnd in range(a.rounds):
                k = rnd % len(names)
                for name in names[k:] + names[:k]:
                    spec = {**base, "uri": uri, "endpoint": endpoint, "step_s": self.step_s,
                            "loader_kwargs": self.configs[name],
                            "warmup_s": a.default_warmup if name == "default" else a.warmup}
                    c0 = cpu_seconds(server.proc.pid) if server else 0.0
                    r = forked(timed_run, spec)
                    if server:
                        self.server_cpu_s[name].append(cpu_seconds(server.proc.pid) - c0)
                    self.runs[name].append(r)
                    log(f"  {self.name} round {rnd} {name:>10}: {r[self.metric]:8.2f} {self.unit}"
                        f" ({r['images_per_s']:.0f} img/s, first batch {r['first_batch_s']:.2f} s,"
                        f" threads at the end {r['samples'][-1]['threads']})")

    def calibrate(self, base, uri, local_best_rate):
        """The step: --step-factor x the loader's batch time."""
        a = self.args
        if local_best_rate:
            rate, how = local_best_rate, "the best grid setting of local in this run"
        else:
            spec = {**base, "uri": uri, "endpoint": None, "step_s": 0.0,
                    "seconds": max(3.0, a.seconds / 2),
                    "loader_kwargs": {"threads": self.cores, "prefetch_batches": 2}}
            r = forked(timed_run, spec)
            # Past the first batch: the rate the step is matched to.
            later = r["elapsed_s"] - r["first_batch_s"]
            rate = (r["images"] - a.batch_size) / later if later > 0 else r["images_per_s"]
            how = f"a {spec['seconds']:g} s calibration run with threads={self.cores}"
        self.step_s = a.step_factor * a.batch_size / rate
        self.calibration = {"loader_images_per_s": rate, "from": how,
                            "loader_batch_s": a.batch_size / rate, "step_s": self.step_s}
        log(f"  consumer: loader batch time {a.batch_size / rate * 1e3:.0f} ms ({how}); "
            f"step {self.step_s * 1e3:.0f} ms")

    def median(self, name, key=None):
        return statistics.median(r[key or self.metric] for r in self.runs[name])

    def summary(self):
        grid = self.grid_names()
        best = max(grid, key=self.median)
        default = self.median("default")
        dflt_runs = self.runs["default"]
        last = dflt_runs[-1]
        mem = {}
        for name, kw in (("default", {}), ("today", self.today)):
            key = "default" if name == "default" else self.today_name
            if key not in self.runs:
                continue
            vals = [peak_batch_memory(r, kw) for r in self.runs[key]]
            mem[name] = {"bytes": max(v[0] for v in vals), "source": vals[0][1]}
        final = {k: v for k, v in last["samples"][-1].items() if k != "t"}
        server = {n: sum(v) / sum(r["elapsed_s"] for r in self.runs[n])
                  for n, v in self.server_cpu_s.items() if v}
        return {
            "setup": self.name, "unit": self.unit, "target": self.target,
            "best": best, "best_rate": self.median(best), "default_rate": default,
            "ratio": default / self.median(best),
            "ratio_from_start": self.median("default", "from_start_" + self.metric)
            / self.median(best),
            "default_images_per_s": self.median("default", "images_per_s"),
            "best_images_per_s": self.median(best, "images_per_s"),
            "today": self.today_name if self.today_name in self.configs else None,
            "today_rate": (self.median(self.today_name)
                           if self.today_name in self.configs else None),
            "grid": {n: self.median(n) for n in self.configs},
            "memory": mem,
            "default_final": final,
            "default_settled_s": statistics.median(settled_after(r["samples"])
                                                   for r in dflt_runs),
            # Runs whose settings still changed in their last second.
            "default_unsettled_runs": sum(settled_after(r["samples"]) > r["elapsed_s"] - 1.0
                                          for r in dflt_runs
                                          if len(r["samples"]) > 1 and
                                          settled_after(r["samples"]) > r["samples"][0]["t"]),
            "default_first_batch_s": self.median("default", "first_batch_s"),
            "server_cores": server, "calibration": self.calibration,
        }


# --------------------------------------------------------- memory mode

MEMORY_CHILD = r"""
import inspect, json, os, sys, threading, time
import stoker

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0

spec = json.loads(sys.argv[1])
base = status("VmRSS")
try:  # reset VmHWM to the current RSS (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    hwm_reset = True
except OSError:
    hwm_reset = False
peak = [base]
stop = threading.Event()
def sample():
    while not stop.wait(0.02):
        peak[0] = max(peak[0], status("VmRSS"))
th = threading.Thread(target=sample, daemon=True)
th.start()
out = {"baseline_bytes": base, "hwm_reset": hwm_reset}
try:
    t0 = time.perf_counter()
    kw = {} if spec["prefetch"] == "default" else {"prefetch_batches": int(spec["prefetch"])}
    budget = spec["budget"]
    if budget == "none":  # no budget: None, or 0 where that was the Loader's default
        default = inspect.signature(stoker.Loader.__init__).parameters["memory_budget"].default
        kw["memory_budget"] = 0 if default == 0 else None
    elif budget != "default":
        kw["memory_budget"] = budget
    loader = stoker.Loader(spec["uri"], batch_size=spec["batch_size"],
                           transform=stoker.transforms.imagenet_train(spec["size"]),
                           shuffle=True, seed=0, **kw)
    images = epoch = 0
    done = False
    while not done:
        loader.set_epoch(epoch)
        for batch in loader:
            images += int(batch["label"].shape[0])
            del batch
            time.sleep(spec["step_s"])
            if time.perf_counter() - t0 >= spec["seconds"]:
                done = True
                break
        epoch += 1
    s = loader.stats()
    out.update({"images": images, "elapsed_s": time.perf_counter() - t0, "threads": loader.threads,
                "memory": {k: v for k, v in s.items() if k.startswith(("memory.", "autotune."))}})
    loader.close()
except Exception as e:  # a budget too small for three batches raises
    out["error"] = f"{type(e).__name__}: {e}"
stop.set()
th.join()
peak[0] = max(peak[0], status("VmRSS"))
hwm = status("VmHWM")
out["peak_sampled_bytes"] = peak[0]
out["hwm_bytes"] = hwm
out["growth_bytes"] = max(peak[0], hwm if hwm_reset else 0) - base
print(json.dumps(out))
"""


def parse_budget(s):
    """A --budgets entry: bytes, or "none" (no budget), "auto" or "default"
    (no memory_budget argument)."""
    s = s.strip()
    if s.lower() in ("none", "auto", "default"):
        return s.lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?B)?", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"a budget such as 512MB or 2GB, got {s!r}")
    unit = (m.group(2) or "B").upper()
    return int(float(m.group(1)) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


def memory_mode(root, args):
    """One fresh interpreter per budget; returns the rows."""
    rows = []
    for label in [b.strip() for b in args.budgets.split(",") if b.strip()]:
        budget = parse_budget(label)
        spec = {"uri": str(root), "batch_size": args.mem_batch, "size": args.mem_size,
                "prefetch": args.mem_prefetch, "budget": budget, "step_s": args.mem_step_s,
                "seconds": args.mem_seconds}
        p = subprocess.run([sys.executable, "-c", MEMORY_CHILD, json.dumps(spec)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"memory run ({label}) failed: {p.stderr[-2000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        # The budget the loader took (auto: from the memory available).
        planned = r.get("memory", {}).get("memory.budget_bytes", 0)
        r.update({"budget": label,
                  "budget_bytes": budget if isinstance(budget, int) else int(planned or 0)})
        rows.append(r)
        if "error" in r:
            log(f"  memory_budget={label}: {r['error']}")
        else:
            log(f"  memory_budget={label}: grew {measure.fmt_bytes(r['growth_bytes'])}, "
                f"{r['images']} images, planned "
                f"{measure.fmt_bytes(r['memory'].get('memory.planned_bytes', 0))}")
    return rows


# ------------------------------------------------------------- output

def fmt_rate(x, unit):
    return f"{x:,.2f} {unit}" if unit == "steps/s" else f"{x:,.0f} {unit}"


def print_report(summaries, setups, mem_rows, args, cores):
    if summaries:
        print("\n### Default against the best explicit setting\n")
        print(f"Rates over {args.seconds:g} s of each run: after {args.warmup:g} s for an "
              f"explicit setting, after {args.default_warmup:g} s for the default (its settings "
              f"found by then); 'from the start' counts the default's whole run from Loader(). "
              f"Batch {args.batch_size}, imagenet_train({args.size}"
              f"{', normalize=True' if args.normalize else ''}), shuffled; medians of "
              f"{args.rounds} round(s). Grid: threads {args.threads_grid} x prefetch_batches "
              f"{args.prefetch_grid} (t=T p=P: threads=T, prefetch_batches=P); today = "
              f"threads={cores} (one per usable core), prefetch_batches=2, the defaults before "
              "autotuning; default: neither argument.\n")
        print("| set-up | best explicit | its rate | default rate | default / best | target "
              "| met | default / best from the start | default's threads, batches ahead at the "
              "end | settled after | prefetched batches at peak: default | today |")
        print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        notes = set()
        for s in summaries:
            mem = s["memory"]

            def m(key):
                if key not in mem:
                    return "-"
                src = mem[key]["source"]
                mark = {"stats": "", "plan": " (a)", "settings": " (b)"}[src]
                notes.add(src)
                return measure.fmt_bytes(mem[key]["bytes"]) + mark
            ok = s["ratio"] >= s["target"]
            print(f"| {s['setup']} | {s['best']} | {fmt_rate(s['best_rate'], s['unit'])} | "
                  f"{fmt_rate(s['default_rate'], s['unit'])} | {s['ratio']:.2f} | "
                  f">= {s['target']:.2f} | {'yes' if ok else 'NO'} | "
                  f"{s['ratio_from_start']:.2f} | {s['default_final']['threads']}, "
                  f"{s['default_final'].get('autotune.prefetch_batches', '-'):.0f} | "
                  f"{s['default_settled_s']:.0f} s"
                  f"{' *' if s['default_unsettled_runs'] else ''} | "
                  f"{m('default')} | {m('today')} |")
        if "plan" in notes:
            print(f"\n(a) {PEAK_KEY} not in stats(): one batch's bytes x the largest "
                  "stats()[\"memory.batch_buffers\"] seen (sampled once a second).")
        if "settings" in notes:
            print("\n(b) computed from the settings: one batch's bytes x (prefetch_batches + 2), "
                  "prefetch_batches=2 for the default.")
        if any(s["default_unsettled_runs"] for s in summaries):
            print("\n* the settings still changed in the last second of a run.")
        print("\n\"settled after\": seconds from Loader() to the last change seen in "
              "loader.threads or an autotune.<Loader argument> key of stats() "
              "(autotune.threads, autotune.prefetch_batches, ...), read once a second; median "
              "over rounds.")
        for s in summaries:
            extra = []
            if s["calibration"]:
                c = s["calibration"]
                extra.append(f"step {c['step_s'] * 1e3:.0f} ms = {args.step_factor:g} x the "
                             f"loader's {c['loader_batch_s'] * 1e3:.0f} ms batch ({c['from']}); "
                             f"images/s: default {s['default_images_per_s']:,.0f}, best "
                             f"{s['best_images_per_s']:,.0f}")
            if s["today"] and s["setup"] != "demo":
                extra.append(f"today ({s['today']}) {fmt_rate(s['today_rate'], s['unit'])}")
            if s["server_cores"]:
                sc = s["server_cores"]
                extra.append(f"stub CPU {min(sc.values()):.2f}-{max(sc.values()):.2f} cores")
            extra.append(f"default's first batch {s['default_first_batch_s']:.2f} s")
            auto = {k: v for k, v in s["default_final"].items() if k.startswith("autotune.")}
            extra.append("default's final autotune.* keys: " +
                         (", ".join(f"{k[len('autotune.'):]}={v:.4g}" if isinstance(v, float)
                                    else f"{k[len('autotune.'):]}={v}" for k, v in auto.items())
                          if auto else "none"))
            print(f"\n{s['setup']}: " + "; ".join(extra) + ".")

        for st, s in zip(setups, summaries):
            print(f"\n#### {st.name}: {st.unit}, medians\n")
            if st.kind == "demo":
                print("| default | " + " | ".join(n for n in st.grid_names()) + " |")
                print("|---:|" + "---:|" * len(st.grid_names()))
                print(f"| {s['grid']['default']:,.0f} | " +
                      " | ".join(f"{s['grid'][n]:,.0f}" for n in st.grid_names()) + " |")
                continue
            dec = 2 if st.unit == "steps/s" else 0
            print("| threads \\ prefetch_batches | " +
                  " | ".join(str(p) for p in args.prefetch_grid) + " |")
            print("|---:|" + "---:|" * len(args.prefetch_grid))
            for t in args.threads_grid:
                cells = [f"{s['grid'][config_name({'threads': t, 'prefetch_batches': p})]:,.{dec}f}"
                         for p in args.prefetch_grid]
                print(f"| {t} | " + " | ".join(cells) + " |")
            line = f"\ndefault {s['grid']['default']:,.{dec}f}"
            if st.today_name not in st.in_grid:
                line += f"; today ({st.today_name}) {s['grid'][st.today_name]:,.{dec}f}"
            print(line)

    if mem_rows:
        print(f"\n### memory_budget: the process's peak growth over its size after "
              f"`import stoker`\n")
        print(f"batch {args.mem_batch} x imagenet_train({args.mem_size}) uint8 "
              f"({measure.fmt_bytes(args.mem_batch * 3 * args.mem_size ** 2)} a batch), "
              f"prefetch_batches={args.mem_prefetch}, a consumer sleeping {args.mem_step_s:g} s "
              f"per batch, {args.mem_seconds:g} s per run, one fresh interpreter each.\n")
        print("| memory_budget | peak growth | growth / budget | within | planned | "
              "batch buffers | threads | images |")
        print("|---|---:|---:|---|---:|---:|---:|---:|")
        for r in mem_rows:
            if "error" in r:
                print(f"| {r['budget']} | - | - | raised: {r['error'][:120]} | - | - | - | - |")
                continue
            b, g, mm = r["budget_bytes"], r["growth_bytes"], r["memory"]
            label = r["budget"] + (f" ({measure.fmt_bytes(b)})" if b and not
                                   r["budget"][0].isdigit() else "")
            ratio = f"{g / b:.2f} | {'yes' if g <= b else 'NO'}" if b else "- | -"
            print(f"| {label} | {measure.fmt_bytes(g)} | {ratio} | "
                  f"{measure.fmt_bytes(mm.get('memory.planned_bytes', 0))} | "
                  f"{mm.get('memory.batch_buffers', '-')} | {r['threads']} | {r['images']} |")
        if not all(r.get("hwm_reset") for r in mem_rows):
            print("\n(VmHWM could not be reset: the peak is VmRSS sampled every 20 ms.)")


# --------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setups", default=None,
                    help=f"comma list of local, s3-<N>ms, bw-<N>MBs, consumer, demo "
                         f"(default {DEFAULT_SETUPS}; none with --memory or --demo alone)")
    ap.add_argument("--demo", action="store_true", help="add the demo set-up")
    ap.add_argument("--memory", action="store_true", help="the memory_budget runs")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="wall clock per run measured, after the warm-up")
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of an explicit setting's run before it is measured")
    ap.add_argument("--default-warmup", type=float, default=20.0,
                    help="seconds of the default's run before it is measured: it must have "
                         "found its settings by then (the target: within 30 s)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads-grid", type=int_list, default=[1, 2, 3, 4])
    ap.add_argument("--prefetch-grid", type=int_list, default=[1, 2, 4, 8])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                    help="float32 normalized batches, as make demo (default on)")
    ap.add_argument("--step-factor", type=float, default=2.0,
                    help="consumer: the step as a multiple of the loader's batch time")
    ap.add_argument("--data", default=str(REPO / "data" / "demo-imagefolder"),
                    help="the ImageFolder (make demo's 2,000 JPEGs, generated there if missing)")
    ap.add_argument("--images", type=int, default=demo.DEFAULT_IMAGES,
                    help="images to generate when --data is missing")
    ap.add_argument("--stub", choices=("cpp", "python"), default=None,
                    help="the stub for s3-<N>ms (default cpp where make build built it); "
                         "bw-<N>MBs always uses the Python one, the one with a bandwidth cap")
    ap.add_argument("--budgets", default="none,512MB,1GB,2GB,4GB,default",
                    help="memory_budget per memory run: sizes (512MB, 2GB), none (no budget), "
                         "auto, or default (no argument)")
    ap.add_argument("--mem-batch", type=int, default=128)
    ap.add_argument("--mem-size", type=int, default=512)
    ap.add_argument("--mem-prefetch", default="16",
                    help="prefetch_batches in the memory runs: N, or default (no argument)")
    ap.add_argument("--mem-step-s", type=float, default=1.0)
    ap.add_argument("--mem-seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="also print every run as JSON")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        ap.error("--rounds must be >= 1 and --seconds > 0")
    if args.mem_prefetch != "default" and not args.mem_prefetch.isdigit():
        ap.error(f"--mem-prefetch must be a count or default, got {args.mem_prefetch!r}")
    try:
        for b in args.budgets.split(","):
            if b.strip():
                parse_budget(b)
    except argparse.ArgumentTypeError as e:
        ap.error(f"--budgets: {e}")

    if args.setups is None:
        names = [] if (args.memory or args.demo) else DEFAULT_SETUPS.split(",")
    else:
        names = [x.strip() for x in args.setups.split(",") if x.strip()]
    if args.demo and "demo" not in names:
        names.append("demo")
    try:
        specs = [parse_setup(n) for n in names]
    except ValueError as e:
        ap.error(str(e))
    kinds = [s["kind"] for s in specs]
    if "consumer" in kinds and "local" in kinds and kinds.index("consumer") < kinds.index("local"):
        specs.insert(kinds.index("consumer"), specs.pop(kinds.index("local")))
    if any(s["kind"] == "s3" for s in specs):
        args.stub = default_stub(args.stub)
    for k, v in CREDENTIALS.items():
        os.environ.setdefault(k, v)

    cores = measure.usable_cpus()
    info = measure.machine_info()
    load0 = os.getloadavg()
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(f"machine: {info['nproc']} usable cores (os.cpu_count {os.cpu_count()}), "
          f"{info['cpu_model']}, {info['mem_total_bytes'] / 2**30:.1f} GiB, "
          f"{platform.platform()}; stoker {stoker.__version__}; load average "
          f"{load0[0]:.2f} at the start", flush=True)

    root = demo.prepare_data(args.data, args.images, demo.DEFAULT_CLASSES, demo.DEFAULT_SEED,
                             log=log)
    files, nbytes = demo.warm_page_cache(root)
    log(f"data: {root}, {files:,} files, {measure.fmt_bytes(nbytes)}")

    setups = [Setup(s, args, cores) for s in specs]
    n_runs = sum(len(s.configs) for s in setups) * args.rounds
    if n_runs:
        total = sum((len(s.configs) - 1) * (args.warmup + args.seconds) + args.default_warmup
                    + args.seconds for s in setups) * args.rounds
        log(f"{n_runs} runs: about {total / 60:.1f} min")
    if args.memory:
        log(f"{len(args.budgets.split(','))} memory runs of {args.mem_seconds:g} s")
    out = {"command": sys.argv, "machine": {**info, "cpu_count": os.cpu_count()},
           "stoker": stoker.__version__, "data": {"root": str(root), "files": files,
                                                  "bytes": nbytes},
           "settings": {k: v for k, v in vars(args).items()}, "load_before": load0,
           "setups": {}, "memory": None}
    summaries = []
    local_best = None
    for st in setups:
        log(f"{st.name}: {len(st.configs)} configurations x {args.rounds} round(s)")
        st.run_all(root, local_best)
        s = st.summary()
        if st.kind == "local":
            local_best = s["best_rate"]
        summaries.append(s)
        out["setups"][st.name] = {"summary": s, "runs": st.runs,
                                  "server_cpu_s": st.server_cpu_s}
    mem_rows = memory_mode(root, args) if args.memory else []
    out["memory"] = mem_rows or None
    out["load_after"] = os.getloadavg()
    print_report(summaries, setups, mem_rows, args, cores)
    print(f"\nload average {load0[0]:.2f} at the start, {out['load_after'][0]:.2f} at the end")
    if args.json:
        print(json.dumps(measure.jsonable(out), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
