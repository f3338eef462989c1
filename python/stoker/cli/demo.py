"""`stoker demo`: stoker on a generated dataset, beside PyTorch's DataLoader
when run from a stoker checkout.

Generates (once, cached) 2,000 ImageNet-like JPEGs in 10 classes, warms the
page cache, then loads them for a few epochs with the ImageNet training
pipeline (RandomResizedCrop(224), flip, normalise; batch 64, shuffled):
stoker at threads=auto, 1 and 2, each in a fresh process (`stoker bench`).
Reported: images/s (median over epochs), CPU seconds per image (whole
process tree) and peak RSS (PSS beside it).

From a stoker checkout (the current folder inside it, as `make demo` runs
it) the same table also holds the peer, torchvision ImageFolder +
DataLoader(num_workers=2) run by the peer's own interpreter, and stoker's
advantage as ratios: bench/demo_compare.py, which bench/compare_torch.py
runs too. The installed package holds no benchmark or peer code.
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


def run(root: Union[str, os.PathLike], *, epochs: int = 5,
        threads: Sequence[Union[int, str]] = DEFAULT_THREADS, batch_size: int = 64,
        size: int = 224, log: Optional[Log] = _stderr, verbose: bool = False) -> Dict[str, Any]:
    """Warms the cache and runs stoker at each thread setting on root;
    returns {dataset, config, stoker: {threads: result}, peer (None here),
    ratios (None here), machine}."""
    log = log or (lambda s: None)
    files, nbytes = warm_page_cache(root)
    marker = datagen.read_marker(root) or {}
    out: Dict[str, Any] = {
        "dataset": {"root": os.fspath(root), "files": files, "bytes": nbytes,
                    "mean_file_bytes": nbytes / files if files else None,
                    "generated": {k: marker.get(k) for k in ("n_images", "n_classes", "seed")}
                    if marker else None},
        "config": {"epochs": epochs, "batch_size": batch_size, "size": size,
                   "transform": "RandomResizedCrop + flip + normalize",
                   "threads": [str(t) for t in threads]},
        "stoker": {},
        "peer": None,
        "ratios": None,
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
    return out


def parse_threads_list(s: str) -> List[Union[int, str]]:
    """'auto,1,2' -> ['auto', 1, 2]."""
    out = [parse_threads(t.strip()) for t in s.split(",") if t.strip()]
    if not out:
        raise ValueError("--threads needs at least one setting")
    return out


def row_values(r: Dict[str, Any]) -> List[str]:
    """One run's cells after the label, in HEADER's columns."""
    mb = measure.fmt_bytes
    return [f"{r['images_per_s']:,.0f}", f"{r['cpu_s_per_image'] * 1e3:.2f}",
            mb(r["peak_rss_bytes"]), mb(r["peak_pss_bytes"]) if r.get("peak_pss_bytes") else "-",
            mb(r["baseline_rss_bytes"]) if r.get("baseline_rss_bytes") else "-"]


HEADER = ["loader", "images/s", "CPU-ms per image", "peak RSS", "peak PSS", "RSS at start"]


def table_rows(result: Dict[str, Any]) -> List[List[str]]:
    """One row per stoker run, in HEADER's columns."""
    return [[f"stoker, threads={t}"] + row_values(r) for t, r in result["stoker"].items()]


NOTE = "RSS at start: before loading, after imports."


def format_table(result: Dict[str, Any], rows: Optional[List[List[str]]] = None,
                 footer: Optional[List[str]] = None) -> str:
    """The demo's plain-text table: `rows` (default: stoker's runs) and
    `footer` lines (default: what the columns mean)."""
    rows = [HEADER] + (table_rows(result) if rows is None else rows)
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
    lines += [""] + (["peak RSS: stoker's process; " + NOTE] if footer is None else footer)
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


# The comparison with PyTorch's DataLoader (and the peer it runs) is
# benchmark code: it lives in a stoker checkout's bench/, not in the
# installed package. `stoker demo` runs it when the current folder is inside
# a checkout (as `make demo` does), else stoker alone.
COMPARISON = Path("bench") / "demo_compare.py"


def find_comparison(start: Optional[Union[str, os.PathLike]] = None) -> Optional[Path]:
    """bench/demo_compare.py of the stoker checkout holding `start` (default:
    the current folder), or None when no checkout holds it."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / COMPARISON).is_file() and (d / "python" / "stoker" / "cli" / "demo.py").is_file():
            return d / COMPARISON
    return None


def load_comparison(path: Union[str, os.PathLike]):
    """Imports bench/demo_compare.py by path (it is not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stoker_bench_demo_compare", os.fspath(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="stoker on generated JPEGs (vs PyTorch's DataLoader from a checkout)",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    p.add_argument("--classes", type=int, default=DEFAULT_CLASSES)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="dataset seed")
    # Five: with the JPEG index (on by default) epoch 0 decodes as without
    # it, epoch 1 also walks every file once, and from epoch 2 decoding is
    # cheaper; the median of five is that steady state.
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=parse_threads_list, default=list(DEFAULT_THREADS),
                   help="stoker's thread settings, comma-separated; the first is compared "
                        "with the peer (default auto,1,2)")
    p.add_argument("--data", help="an ImageFolder to use as it is, or a folder to generate into "
                                  "(default $STOKER_DATA or ./data/demo-imagefolder)")
    p.add_argument("--workers", type=int, default=2,
                   help="the peer's DataLoader workers (comparison: from a checkout)")
    p.add_argument("--peer-python", help="interpreter with torch (+ torchvision) for the peer "
                                         "(comparison: from a checkout)")
    p.add_argument("--also-peer-python", action="append", default=[], metavar="PATH",
                   help="run the peer under this interpreter too (e.g. this one, for the same "
                        "torch build as stoker); repeatable (comparison: from a checkout)")
    p.add_argument("--no-peer", action="store_true", help="run stoker only")
    p.add_argument("--verbose", action="store_true", help="show the runs' own progress")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_run)


def _run(args) -> int:
    if args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    comparison = None if args.no_peer else find_comparison()
    if comparison is None and not args.no_peer and (args.peer_python or args.also_peer_python):
        raise ValueError(
            f"--peer-python and --also-peer-python need a stoker checkout: the comparison with "
            f"PyTorch's DataLoader is {COMPARISON} there, and no checkout holds {Path.cwd()}")
    root = prepare_data(args.data, args.images, args.classes, args.seed)
    try:
        if comparison is not None:
            cmp = load_comparison(comparison)
            result = cmp.compare(root, epochs=args.epochs, threads=args.threads,
                                 batch_size=args.batch_size, workers=args.workers,
                                 peer_python=args.peer_python,
                                 extra_peer_pythons=args.also_peer_python, verbose=args.verbose)
            text = cmp.format_table(result)
        else:
            if not args.no_peer:
                _stderr(f"stoker alone: the comparison with PyTorch's DataLoader runs from a "
                        f"stoker checkout ({COMPARISON}; `make demo` there)")
            result = run(root, epochs=args.epochs, threads=args.threads,
                         batch_size=args.batch_size, verbose=args.verbose)
            text = format_table(result)
    except RunFailed as e:
        print(f"stoker demo: {e}", file=sys.stderr)
        return 1
    print(json.dumps(measure.jsonable(result)) if args.json else text)
    return 0
