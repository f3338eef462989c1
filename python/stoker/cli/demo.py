"""`stoker demo`: stoker and PyTorch's DataLoader on the same data, one table.

Generates (once, cached) 2,000 ImageNet-like JPEGs in 10 classes, warms the
page cache so both loaders read from memory, then loads them for a few
epochs with the ImageNet training pipeline (RandomResizedCrop(224), flip,
normalise; batch 64, shuffled):
- stoker at threads=auto, 1 and 2, each in a fresh process (`stoker bench`);
- the peer: torchvision ImageFolder + DataLoader(num_workers=2), run by the
  peer's own interpreter (--peer-python, $STOKER_PEER_PYTHON, a
  .venv-peer next to this environment or in the current folder, else this
  interpreter).
Reported: images/s (median over epochs), CPU seconds per image (whole
process tree), peak RSS (stoker's process vs the peer's process tree, summed
RSS; PSS beside it), and stoker's advantage as ratios.

The functions here are also what bench/compare_torch.py runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from stoker import _measure as measure
from stoker import datagen
from stoker.cli.bench import parse_threads
from stoker.peers import TORCH_DATALOADER

DEFAULT_IMAGES, DEFAULT_CLASSES, DEFAULT_SEED = 2000, 10, 0
DEFAULT_THREADS: Tuple[Union[int, str], ...] = ("auto", 1, 2)

Log = Callable[[str], None]


def _stderr(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def default_data_dir(images: int = DEFAULT_IMAGES, classes: int = DEFAULT_CLASSES,
                     seed: int = DEFAULT_SEED) -> Path:
    """$STOKER_DATA or ./data/demo-imagefolder for the default dataset; a
    sibling folder named after the parameters for any other, so a small
    trial run does not replace the cached default."""
    base = Path(os.environ.get("STOKER_DATA") or Path("data") / "demo-imagefolder")
    if (images, classes, seed) == (DEFAULT_IMAGES, DEFAULT_CLASSES, DEFAULT_SEED):
        return base
    return base.with_name(f"{base.name}-{images}x{classes}-seed{seed}")


def resolve_peer_python(explicit: Optional[str] = None) -> str:
    """The interpreter that runs the peer: explicit, $STOKER_PEER_PYTHON,
    .venv-peer beside this environment (e.g. /repo/.venv -> /repo/.venv-peer)
    or in the current folder, else this interpreter."""
    if explicit:
        return explicit
    if os.environ.get("STOKER_PEER_PYTHON"):
        return os.environ["STOKER_PEER_PYTHON"]
    for venv in (Path.cwd() / ".venv-peer", Path(sys.prefix).parent / ".venv-peer"):
        py = venv / "bin" / "python"
        if py.exists():
            return str(py)
    return sys.executable


def warm_page_cache(root: Union[str, os.PathLike]) -> Tuple[int, int]:
    """Reads every file under root once (dotfiles aside), so every loader
    after it finds the same warm page cache. Returns (files, bytes)."""
    files = total = 0
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            with open(os.path.join(dirpath, name), "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    total += len(b)
            files += 1
    return files, total


# The stoker CLI, in a fresh interpreter (so each run's memory and CPU are its own).
_CLI = [sys.executable, "-c", "import sys; from stoker.cli import main; sys.exit(main(sys.argv[1:]))"]


class RunFailed(RuntimeError):
    """A measured run (a child process) failed; the message has its stderr's tail."""


def _run_json(cmd: Sequence[str], what: str, verbose: bool = False) -> Dict[str, Any]:
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE,
                       stderr=None if verbose else subprocess.PIPE, text=True)
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-15:]
        raise RunFailed(f"{what} failed (exit {p.returncode}): " + "\n".join(tail))
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise RunFailed(f"{what} printed no JSON object: {p.stdout[-500:]!r}") from None


def run_stoker(root: Union[str, os.PathLike], *, epochs: int = 5, threads: Union[int, str] = "auto",
               batch_size: int = 64, size: int = 224, normalize: bool = True,
               verbose: bool = False) -> Dict[str, Any]:
    """`stoker bench ROOT --json` in a fresh process: the bench JSON object."""
    cmd = _CLI + ["bench", os.fspath(root), "--json", "--epochs", str(epochs), "--threads",
                  str(threads), "--batch-size", str(batch_size), "--size", str(size),
                  "--transform", "train", "--normalize" if normalize else "--no-normalize"]
    return _run_json(cmd, f"stoker (threads={threads})", verbose)


def run_peer(python: str, root: Union[str, os.PathLike], *, epochs: int = 5, batch_size: int = 64,
             workers: int = 2, size: int = 224, persistent_workers: bool = False,
             verbose: bool = False) -> Dict[str, Any]:
    """The torch DataLoader peer under `python`: its JSON object."""
    cmd = [python, str(TORCH_DATALOADER), os.fspath(root), "--json", "--epochs", str(epochs),
           "--batch-size", str(batch_size), "--workers", str(workers), "--size", str(size)]
    if persistent_workers:
        cmd.append("--persistent-workers")
    return _run_json(cmd, f"peer ({python})", verbose)


def ratios(s: Dict[str, Any], p: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """stoker's advantage over the peer; every ratio > 1 means stoker is better:
    speedup = images/s stoker / peer; cpu_ratio = CPU-s per image peer /
    stoker; rss_ratio and pss_ratio = peak memory peer / stoker."""
    def div(a, b):
        return a / b if a and b and a > 0 and b > 0 else None
    return {
        "speedup": div(s.get("images_per_s"), p.get("images_per_s")),
        "cpu_ratio": div(p.get("cpu_s_per_image"), s.get("cpu_s_per_image")),
        "rss_ratio": div(p.get("peak_rss_bytes"), s.get("peak_rss_bytes")),
        "pss_ratio": div(p.get("peak_pss_bytes"), s.get("peak_pss_bytes")),
    }


def compare(root: Union[str, os.PathLike], *, epochs: int = 5,
            threads: Sequence[Union[int, str]] = DEFAULT_THREADS, batch_size: int = 64,
            workers: int = 2, size: int = 224, peer_python: Optional[str] = None,
            run_peer_too: bool = True, persistent_workers: bool = False,
            extra_peer_pythons: Sequence[str] = (), log: Optional[Log] = _stderr,
            verbose: bool = False) -> Dict[str, Any]:
    """Warms the cache, runs stoker at each thread setting and the peer on
    root; returns {dataset, config, stoker: {threads: result}, peer, ratios,
    machine}, and more_peers for extra_peer_pythons (the same peer under
    other interpreters, e.g. another torch build). A peer that fails is
    reported as {"error": ...}."""
    log = log or (lambda s: None)
    files, nbytes = warm_page_cache(root)
    marker = datagen.read_marker(root) or {}
    out: Dict[str, Any] = {
        "dataset": {"root": os.fspath(root), "files": files, "bytes": nbytes,
                    "mean_file_bytes": nbytes / files if files else None,
                    "generated": {k: marker.get(k) for k in ("n_images", "n_classes", "seed")}
                    if marker else None},
        "config": {"epochs": epochs, "batch_size": batch_size, "size": size,
                   "transform": "RandomResizedCrop + flip + normalize", "workers": workers,
                   "persistent_workers": persistent_workers, "threads": [str(t) for t in threads]},
        "stoker": {},
        "peer": None,
        "machine": measure.machine_info(),
    }
    log(f"warm page cache: {files:,} files, {measure.fmt_bytes(nbytes)}")
    for t in threads:
        log(f"stoker, threads={t}: {epochs} epochs ...")
        r = run_stoker(root, epochs=epochs, threads=t, batch_size=batch_size, size=size,
                       verbose=verbose)
        out["stoker"][str(t)] = r
        log(f"  {r['images_per_s']:,.0f} img/s, {r['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img, "
            f"peak RSS {measure.fmt_bytes(r['peak_rss_bytes'])}")
    pythons = ([resolve_peer_python(peer_python)] if run_peer_too else []) + list(extra_peer_pythons)
    peers = []
    for py in pythons:
        log(f"PyTorch DataLoader ({workers} workers) under {py}: {epochs} epochs ...")
        try:
            p = run_peer(py, root, epochs=epochs, batch_size=batch_size, workers=workers, size=size,
                         persistent_workers=persistent_workers, verbose=verbose)
            log(f"  {p['images_per_s']:,.0f} img/s, {p['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img, "
                f"peak RSS {measure.fmt_bytes(p['peak_rss_bytes'])} ({p['peer']})")
        except (RunFailed, OSError) as e:  # OSError: no such interpreter
            p = {"error": str(e)}
            log(f"  peer failed: {e}")
        p["python_path"] = py
        peers.append(p)
    if run_peer_too:
        out["config"]["peer_python"] = pythons[0]
        out["peer"] = peers[0]
        out["more_peers"] = peers[1:]
    else:
        out["more_peers"] = peers
    ref = out["stoker"].get(str(threads[0])) if threads else None
    peer_ok = out["peer"] is not None and "error" not in out["peer"]
    out["ratios"] = ratios(ref, out["peer"]) if ref and peer_ok else None
    out["ratios_vs"] = f"stoker threads={threads[0]}" if out["ratios"] else None
    return out


def parse_threads_list(s: str) -> List[Union[int, str]]:
    """'auto,1,2' -> ['auto', 1, 2]."""
    out = [parse_threads(t.strip()) for t in s.split(",") if t.strip()]
    if not out:
        raise ValueError("--threads needs at least one setting")
    return out


def _row_values(r: Dict[str, Any]) -> List[str]:
    mb = measure.fmt_bytes
    return [f"{r['images_per_s']:,.0f}", f"{r['cpu_s_per_image'] * 1e3:.2f}",
            mb(r["peak_rss_bytes"]), mb(r["peak_pss_bytes"]) if r.get("peak_pss_bytes") else "-",
            mb(r["baseline_rss_bytes"]) if r.get("baseline_rss_bytes") else "-"]


HEADER = ["loader", "images/s", "CPU-ms per image", "peak RSS", "peak PSS", "RSS at start"]


def peer_label(p: Dict[str, Any], workers: int) -> str:
    """'PyTorch DataLoader, 2 workers (torch 2.14.1, torchvision)'."""
    name = f"PyTorch DataLoader, {workers} workers"
    if "error" in p:
        return name
    how = "torchvision" if p.get("torchvision") else "Pillow re-impl. of torchvision"
    return f"{name} (torch {str(p.get('torch', '?')).split('+')[0]}, {how})"


def all_peers(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    return ([result["peer"]] if result.get("peer") is not None else []) + list(
        result.get("more_peers") or [])


def table_rows(result: Dict[str, Any]) -> List[List[str]]:
    """One row per run, in HEADER's columns."""
    rows = [[f"stoker, threads={t}"] + _row_values(r) for t, r in result["stoker"].items()]
    for p in all_peers(result):
        label = peer_label(p, result["config"]["workers"])
        rows.append([label, "failed"] + [""] * (len(HEADER) - 2) if "error" in p
                    else [label] + _row_values(p))
    return rows


def format_ratios(result: Dict[str, Any]) -> str:
    q = result.get("ratios")
    if not q:
        return ""
    parts = [f"{q['speedup']:.1f}x the images/s" if q.get("speedup") else None,
             f"{q['cpu_ratio']:.1f}x less CPU per image" if q.get("cpu_ratio") else None,
             f"{q['rss_ratio']:.1f}x less peak RSS" if q.get("rss_ratio") else None]
    s = f"{result['ratios_vs']} vs PyTorch DataLoader: " + ", ".join(x for x in parts if x)
    return s + (f" ({q['pss_ratio']:.1f}x by PSS)" if q.get("pss_ratio") else "")


def notes(result: Dict[str, Any]) -> List[str]:
    """Caveats a reader of the numbers needs."""
    out = ["peak RSS: stoker's process vs the sum over the peer's main process and its workers "
           "(PSS counts the pages they share once); RSS at start: before loading, after imports."]
    s0 = next(iter(result["stoker"].values()), None)
    for p in all_peers(result):
        if "error" in p:
            out.append(f"peer failed: {p['error']}")
        elif s0 and p.get("torch") != s0.get("torch"):
            out.append(f"the peer runs torch {p.get('torch')} and stoker torch {s0.get('torch')}: "
                       f"their imports alone differ in RSS ({measure.fmt_bytes(p.get('baseline_rss_bytes') or 0)}"
                       f" vs {measure.fmt_bytes(s0.get('baseline_rss_bytes') or 0)} at start).")
    return out


def format_table(result: Dict[str, Any]) -> str:
    """The demo's plain-text table."""
    rows = [HEADER] + table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    d, c, m = result["dataset"], result["config"], result["machine"]
    lines = [
        f"{d['files']:,} JPEGs ({measure.fmt_bytes(d['mean_file_bytes'] or 0)} mean) from "
        f"{d['root']}, warm page cache; RandomResizedCrop(224) + flip + normalize, batch "
        f"{c['batch_size']}, median of {c['epochs']} epochs; {m['nproc']} cores ({m['cpu_model']})",
        "",
    ]
    for i, r in enumerate(rows):
        lines.append("  ".join(r[0].ljust(widths[0]) if j == 0 else r[j].rjust(widths[j])
                               for j in range(len(r))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if result.get("ratios"):
        lines += ["", format_ratios(result)]
    lines += [""] + notes(result)
    return "\n".join(lines)


def prepare_data(data: Optional[str], images: int, classes: int, seed: int,
                 log: Optional[Log] = _stderr) -> Path:
    """The dataset root: --data as it is when it holds files (any ImageFolder);
    otherwise generated there, or in the default cache folder, unless a
    marker file says it already was."""
    root = Path(data) if data else default_data_dir(images, classes, seed)
    if data and root.is_dir() and any(root.iterdir()):
        m = datagen.read_marker(root)
        if m is None or m.get("complete"):
            return root
    if not datagen.is_generated(root, images, classes, seed):
        if log:
            log(f"generating {images:,} ImageNet-like JPEGs in {root} (once) ...")
        datagen.make_imagefolder(root, images, classes, seed)
        m = datagen.read_marker(root) or {}
        if log:
            log(f"  done in {m.get('generate_s')} s, mean {m.get('mean_bytes', 0) / 1e3:.0f} KB")
    return root


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="stoker vs PyTorch's DataLoader on generated JPEGs",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    p.add_argument("--classes", type=int, default=DEFAULT_CLASSES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="dataset seed")
    # Five: with the JPEG index (on by default) epoch 0 decodes as without
    # it, epoch 1 also walks every file once, and from epoch 2 decoding is
    # cheaper; the median of five is that steady state.
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="the peer's DataLoader workers")
    p.add_argument("--threads", type=parse_threads_list, default=list(DEFAULT_THREADS),
                   help="stoker's thread settings, comma-separated; the first is compared "
                        "with the peer (default auto,1,2)")
    p.add_argument("--data", help="an ImageFolder to use as it is, or a folder to generate into "
                                  "(default $STOKER_DATA or ./data/demo-imagefolder)")
    p.add_argument("--peer-python", help="interpreter with torch (+ torchvision) for the peer")
    p.add_argument("--also-peer-python", action="append", default=[], metavar="PATH",
                   help="run the peer under this interpreter too (e.g. this one, for the same "
                        "torch build as stoker); repeatable")
    p.add_argument("--no-peer", action="store_true", help="run stoker only")
    p.add_argument("--verbose", action="store_true", help="show the runs' own progress")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_run)


def _run(args) -> int:
    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    root = prepare_data(args.data, args.images, args.classes, args.seed)
    try:
        result = compare(root, epochs=args.epochs, threads=args.threads,
                         batch_size=args.batch_size, workers=args.workers,
                         peer_python=args.peer_python, run_peer_too=not args.no_peer,
                         extra_peer_pythons=args.also_peer_python, verbose=args.verbose)
    except RunFailed as e:
        print(f"stoker demo: {e}", file=sys.stderr)
        return 1
    print(json.dumps(measure.jsonable(result)) if args.json else format_table(result))
    return 0
