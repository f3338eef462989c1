"""stoker vs PyTorch's DataLoader on the same data, one table: what `stoker
demo` runs from a checkout and what bench/compare_torch.py builds on.

stoker's side is the installed `stoker demo`'s own run (stoker.cli.demo.run:
`stoker bench` at each thread setting, each in a fresh process). The peer is
torchvision ImageFolder + DataLoader(num_workers=2), run by the peer's own
interpreter (--peer-python, $STOKER_PEER_PYTHON, a .venv-peer next to this
environment or in the current folder, else this interpreter) from
bench/peers/torch_dataloader.py. Reported beside stoker's rows: the peer's
images/s, CPU seconds per image (its whole process tree), peak RSS (the
peer's process tree, summed RSS; PSS beside it), and stoker's advantage as
ratios.

Loaded by path (stoker.cli.demo.load_comparison), so it imports nothing from
bench/ by module name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from stoker import _measure as measure
from stoker.cli import demo
from stoker.cli.demo import DEFAULT_THREADS, HEADER, Log, RunFailed

TORCH_DATALOADER = Path(__file__).resolve().parent / "peers" / "torch_dataloader.py"


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


def run_peer(python: str, root: Union[str, os.PathLike], *, epochs: int = 5, batch_size: int = 64,
             workers: int = 2, size: int = 224, persistent_workers: bool = False,
             verbose: bool = False) -> Dict[str, Any]:
    """The torch DataLoader peer under `python`: its JSON object."""
    cmd = [python, str(TORCH_DATALOADER), os.fspath(root), "--json", "--epochs", str(epochs),
           "--batch-size", str(batch_size), "--workers", str(workers), "--size", str(size)]
    if persistent_workers:
        cmd.append("--persistent-workers")
    return demo._run_json(cmd, f"peer ({python})", verbose)


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
            extra_peer_pythons: Sequence[str] = (), log: Optional[Log] = demo._stderr,
            verbose: bool = False) -> Dict[str, Any]:
    """Warms the cache, runs stoker at each thread setting and the peer on
    root; returns {dataset, config, stoker: {threads: result}, peer, ratios,
    machine}, and more_peers for extra_peer_pythons (the same peer under
    other interpreters, e.g. another torch build). A peer that fails is
    reported as {"error": ...}."""
    out = demo.run(root, epochs=epochs, threads=threads, batch_size=batch_size, size=size,
                   log=log, verbose=verbose)
    log = log or (lambda s: None)
    out["config"].update(workers=workers, persistent_workers=persistent_workers)
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
    """One row per run, stoker's then the peers', in HEADER's columns."""
    rows = demo.table_rows(result)
    for p in all_peers(result):
        label = peer_label(p, result["config"]["workers"])
        rows.append([label, "failed"] + [""] * (len(HEADER) - 2) if "error" in p
                    else [label] + demo.row_values(p))
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
           "(PSS counts the pages they share once); " + demo.NOTE]
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
    """The demo's plain-text table, with the peer's rows and the ratios."""
    footer = (["", format_ratios(result)] if result.get("ratios") else []) + [""] + notes(result)
    return demo.format_table(result, rows=table_rows(result), footer=footer[1:])
