"""stoker vs PyTorch's DataLoader: the benchmark behind the README's numbers.

    .venv/bin/python bench/compare_torch.py                      # 5 epochs, threads auto,1,2
    .venv/bin/python bench/compare_torch.py --epochs 10          # memory: RSS after epoch 2 vs 10
    .venv/bin/python bench/compare_torch.py --data /my/imagefolder --peer-python /other/venv/bin/python

What `stoker demo` runs from a checkout (bench/demo_compare.py), made
configurable, printed as a Markdown table
ready to paste, followed by the workload, the versions, the machine and the
command line that produced it. On the same warm page cache, one after the
other in fresh processes:
- stoker (`stoker bench --json`) at each --threads setting;
- torchvision ImageFolder + DataLoader(num_workers=--workers) under the peer
  interpreter (bench/peers/torch_dataloader.py).
images/s is the median over epochs; CPU per image counts every thread and
process (the peer's workers included); peak RSS is stoker's process vs the
sum over the peer's process tree, with PSS (shared pages counted once)
beside it.

Needs the stoker package (pip install .) in the interpreter that runs it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any, Dict, List, Optional

from stoker import _measure as measure
from stoker.cli import demo

import demo_compare  # bench/, beside this script


def _mb(n: Optional[float]) -> str:
    return measure.fmt_bytes(n) if n else "-"


def _rss_drift(r: Dict[str, Any]) -> str:
    # RSS after the 2nd epoch vs after the last: flat means no leak or growth.
    rss = r.get("rss_after_epoch") or []
    if len(rss) < 3:
        return "-"
    return f"{_mb(rss[1])} → {_mb(rss[-1])}"


def markdown(result: Dict[str, Any], argv: List[str]) -> str:
    c, d, m = result["config"], result["dataset"], result["machine"]
    epochs = c["epochs"]
    head = list(demo.HEADER) + [f"RSS after epoch 2 → {epochs}"]
    runs = list(result["stoker"].values()) + demo_compare.all_peers(result)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    for cells, r in zip(demo_compare.table_rows(result), runs):
        cells = cells + ["" if "error" in r else _rss_drift(r)]
        lines.append("| " + " | ".join(cells) + " |")

    out = ["### stoker vs PyTorch DataLoader", ""] + lines + [""]
    if result.get("ratios"):
        out += [f"**{demo_compare.format_ratios(result)}**", ""]
    gen = d.get("generated") or {}
    what = (f"{d['files']:,} generated ImageNet-like JPEGs ({gen.get('n_classes')} classes, "
            f"seed {gen.get('seed')})" if gen else f"{d['files']:,} files from {d['root']}")
    out.append(f"- Data: {what}, mean {_mb(d['mean_file_bytes'])}, read once beforehand "
               f"(warm page cache).")
    out.append(f"- Work: RandomResizedCrop({c['size']}) + horizontal flip + normalize to float32 "
               f"NCHW, batch {c['batch_size']}, shuffled; images/s is the median of "
               f"{epochs} epochs.")
    for p in demo_compare.all_peers(result):
        if "error" in p:
            out.append(f"- Peer under {p.get('python_path')} failed: {p['error']}")
            continue
        tv = f"torchvision {p['torchvision']}" if p.get("torchvision") else "no torchvision"
        out.append(f"- Peer: {p['peer']}: torch {p['torch']}, {tv}, Pillow {p['pillow']}, "
                   f"DataLoader(num_workers={p['workers']}, persistent_workers="
                   f"{p['persistent_workers']}), Python {p['python']}.")
    s0 = next(iter(result["stoker"].values()), None)
    if s0:
        out.append(f"- stoker {s0.get('stoker')}, torch {s0.get('torch')} (tensors handed over "
                   f"via DLPack), Python {m['python']}.")
    out.append(f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), "
               f"{m['mem_total_bytes'] / 2**30:.0f} GiB RAM, {m['platform']}.")
    out += [f"- {n[0].upper()}{n[1:]}" for n in demo_compare.notes(result) if not n.startswith("peer failed")]
    out.append(f"- Command: `{' '.join(shlex.quote(a) for a in argv)}`")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", help="dataset folder (default: the demo's generated one)")
    p.add_argument("--images", type=int, default=demo.DEFAULT_IMAGES)
    p.add_argument("--classes", type=int, default=demo.DEFAULT_CLASSES)
    p.add_argument("--seed", type=int, default=demo.DEFAULT_SEED)
    p.add_argument("--epochs", type=int, default=5,
                   help="at least 3; 5 (the default) to see the JPEG index's steady state, 10 to "
                        "see memory over time")
    p.add_argument("--threads", type=demo.parse_threads_list, default=list(demo.DEFAULT_THREADS),
                   help="stoker thread settings; the first is compared with the peer")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="the peer's DataLoader workers")
    p.add_argument("--persistent-workers", action="store_true", help="the peer keeps its workers")
    p.add_argument("--peer-python", help="interpreter with torch + torchvision for the peer")
    p.add_argument("--also-peer-python", action="append", default=[], metavar="PATH",
                   help="run the peer under this interpreter too (e.g. stoker's own, for the "
                        "same torch build); repeatable")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--json", action="store_true", help="print the full results as one JSON object")
    p.add_argument("--out", help="also write the full results as JSON to this file")
    a = p.parse_args(argv)
    if a.epochs < 3:
        p.error("--epochs must be at least 3 (the median needs them)")

    root = demo.prepare_data(a.data, a.images, a.classes, a.seed)
    result = demo_compare.compare(root, epochs=a.epochs, threads=a.threads, batch_size=a.batch_size,
                          workers=a.workers, peer_python=a.peer_python,
                          run_peer_too=not a.no_peer, persistent_workers=a.persistent_workers,
                          extra_peer_pythons=a.also_peer_python)
    result["command"] = ["bench/compare_torch.py"] + argv
    if a.out:
        with open(a.out, "w") as f:
            json.dump(measure.jsonable(result), f, indent=1)
    if a.json:
        print(json.dumps(measure.jsonable(result)))
    else:
        print(markdown(result, ["python", "bench/compare_torch.py"] + argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
