"""Measuring a run: wall time, CPU time and peak memory of a process tree.

Standard library only, and no imports from the rest of stoker: the peer
baseline in a checkout (bench/peers/torch_dataloader.py) loads this file by
path under an interpreter where stoker is not installed, so both sides of a comparison are
measured by the same code.

What is measured, and why this way:
- CPU time of a process tree is the process's own time plus its children's.
  getrusage(RUSAGE_CHILDREN) only holds children that have exited and been
  waited for (DataLoader workers are joined at the end of each epoch), so
  live descendants are added from /proc/<pid>/stat. Read at quiet moments
  (epoch boundaries) the two never overlap.
- Peak RSS of a tree is the peak of the *sum* of VmRSS over the process and
  all its descendants, sampled by a background thread every ~25 ms. Summed
  RSS counts pages shared between processes (forked workers, shared
  libraries) once per process; PSS (proportional set size, from
  /proc/<pid>/smaps_rollup) splits them and is sampled too when asked for.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_HAS_PROC = os.path.isdir("/proc/self")


def median(xs: Iterable[float]) -> float:
    """Median of xs; nan when empty."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


class Stopwatch:
    """Monotonic stopwatch: elapsed() since start, lap() since the last lap."""

    def __init__(self) -> None:
        self.start = self._last = time.perf_counter()
        self.laps: List[float] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        self.laps.append(dt)
        return dt


# ---------------------------------------------------------------- /proc readers


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "r") as f:
            return f.read()
    except OSError:  # the process exited between listing and reading
        return None


def children(pid: int) -> List[int]:
    """Direct children of pid (via /proc/<pid>/task/*/children)."""
    out: List[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        s = _read(f"/proc/{pid}/task/{tid}/children")
        if s:
            out.extend(int(x) for x in s.split())
    return out


def _children_by_scan() -> Dict[int, List[int]]:
    # Fallback for kernels without CONFIG_PROC_CHILDREN: ppid of every process.
    kids: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read(f"/proc/{name}/stat")
            if st:
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                kids.setdefault(ppid, []).append(int(name))
    return kids


_HAS_CHILDREN_FILE = _HAS_PROC and os.path.exists(
    f"/proc/self/task/{os.getpid()}/children")


def descendants(pid: int) -> List[int]:
    """All live descendants of pid (children, grandchildren, ...)."""
    if not _HAS_PROC:
        return []
    out: List[int] = []
    if _HAS_CHILDREN_FILE:
        stack = children(pid)
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(children(p))
    else:
        kids = _children_by_scan()
        stack = list(kids.get(pid, []))
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(kids.get(p, []))
    return out


def rss_bytes(pid: Optional[int] = None) -> int:
    """Current VmRSS of one process (0 if it is gone or /proc is missing)."""
    s = _read(f"/proc/{pid or os.getpid()}/statm")
    if not s:
        if pid in (None, os.getpid()):  # no /proc: best effort from the peak
            return _maxrss_self()
        return 0
    return int(s.split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pss_bytes(pid: Optional[int] = None) -> int:
    """Current PSS of one process (0 if unavailable)."""
    s = _read(f"/proc/{pid or os.getpid()}/smaps_rollup")
    if s:
        for line in s.splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _maxrss_self() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def tree_rss_bytes(pid: Optional[int] = None) -> int:
    """Sum of VmRSS over pid and its live descendants."""
    pid = pid or os.getpid()
    return sum(rss_bytes(p) for p in [pid] + descendants(pid))


def tree_pss_bytes(pid: Optional[int] = None) -> int:
    """Sum of PSS over pid and its live descendants."""
    pid = pid or os.getpid()
    return sum(pss_bytes(p) for p in [pid] + descendants(pid))


def _proc_cpu_seconds(pid: int, with_children: bool = True) -> float:
    st = _read(f"/proc/{pid}/stat")
    if not st:
        return 0.0
    f = st[st.rindex(")") + 2:].split()  # f[0] is field 3 (state)
    ticks = int(f[11]) + int(f[12])  # utime, stime
    if with_children:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime: waited-for children
    return ticks / _CLK_TCK


def cpu_seconds(children: bool = True) -> float:
    """User+system CPU seconds of this process, plus (children=True) its
    exited-and-waited-for descendants."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    t = r.ru_utime + r.ru_stime
    if children:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        t += c.ru_utime + c.ru_stime
    return t


def tree_cpu_seconds(pid: Optional[int] = None) -> float:
    """CPU seconds of a whole process tree: the process, its reaped
    descendants, and its live descendants (from /proc). Exact at moments
    when no child is exiting (e.g. between epochs)."""
    pid = pid or os.getpid()
    if pid == os.getpid():
        t = cpu_seconds(children=True)
    else:
        t = _proc_cpu_seconds(pid, with_children=True)
    return t + sum(_proc_cpu_seconds(p, with_children=True) for p in descendants(pid))


# ------------------------------------------------------------- the tree sampler


class TreeSampler:
    """Samples the summed RSS (and optionally PSS) of a process tree from a
    background thread; use as a context manager.

        with TreeSampler() as s:
            run()
        s.peak_rss_bytes

    Reading PSS walks the page tables (~4 ms for a process with torch
    loaded), so it is sampled every pss_interval_s only. The thread's own
    CPU time is kept in cpu_s, for callers to take out of what they measure.
    """

    def __init__(self, pid: Optional[int] = None, interval_s: float = 0.025,
                 pss: bool = False, pss_interval_s: float = 2.0,
                 tree_interval_s: float = 0.25) -> None:
        self.pid = pid or os.getpid()
        self.interval_s = interval_s
        self.pss = pss and _HAS_PROC and os.path.exists(f"/proc/{self.pid}/smaps_rollup")
        self.pss_interval_s = pss_interval_s
        self.tree_interval_s = tree_interval_s
        self._pids: List[int] = []
        self._next_tree = 0.0
        self.peak_rss_bytes = 0
        self.peak_pss_bytes = 0
        self.peak_processes = 0
        self.samples = 0
        self._cpu_s = 0.0
        self._next_pss = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    @property
    def cpu_s(self) -> float:
        """CPU seconds the sampling thread has used so far."""
        with self._lock:
            return self._cpu_s

    def sample(self) -> int:
        """Takes one sample now; returns the tree's current summed RSS."""
        # Finding the descendants reads a file per thread of every process
        # in the tree: refreshed every tree_interval_s, not every sample, so
        # the sampler takes little CPU from what it measures.
        now = time.monotonic()
        if now >= self._next_tree or not self._pids:
            self._next_tree = now + self.tree_interval_s
            self._pids = [self.pid] + descendants(self.pid)
        pids = self._pids
        rss = sum(rss_bytes(p) for p in pids)
        pss = 0
        if self.pss and now >= self._next_pss:
            self._next_pss = now + self.pss_interval_s
            pss = sum(pss_bytes(p) for p in pids)
        with self._lock:
            self.samples += 1
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
            self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
        return rss

    def rescan(self) -> int:
        """Lists the tree again and samples it now. For moments when the
        caller knows the tree changed (DataLoader workers just started):
        between timed rescans a short-lived child would otherwise be missed."""
        self._next_tree = 0.0
        return self.sample()

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_rss_bytes = self.peak_pss_bytes = self.peak_processes = 0

    def _run(self) -> None:
        t0 = time.thread_time()
        while not self._stop.wait(self.interval_s):
            self.sample()
            t1 = time.thread_time()
            with self._lock:
                self._cpu_s += t1 - t0
            t0 = t1

    def start(self) -> "TreeSampler":
        self.sample()
        self._thread = threading.Thread(target=self._run, name="stoker-rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._next_pss = 0.0
            self._next_tree = 0.0
            self.sample()

    def __enter__(self) -> "TreeSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------ machine info


def cpu_model() -> str:
    s = _read("/proc/cpuinfo") or ""
    for line in s.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_info() -> Dict[str, object]:
    mem = 0
    s = _read("/proc/meminfo") or ""
    for line in s.splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    return {
        "nproc": usable_cpus(),
        "cpu_model": cpu_model(),
        "mem_total_bytes": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def fmt_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as file sizes are usually quoted)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def jsonable(obj):
    """obj with NaN/inf floats replaced by None, so json.dumps writes valid JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
