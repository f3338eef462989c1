"""What map= costs: images/s of the Python Loader with and without a trivial
map function (``lambda s: s``: the sample's dict built, the GIL taken, the
image copied out and back), alternately in one run on one dataset.

    .venv/bin/python bench/map_cost.py [--root data/demo-imagefolder] [--rounds 5]

Each run: imagenet_train(224), batch 64, threads one per core, `--epochs`
epochs; the epochs after the first two (the JPEG index's walk) give its
images/s. Prints each round, the medians and the ratio (with / without);
the target is at least 0.90. Also times batch_map= with a trivial function.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import stoker

REPO = Path(__file__).resolve().parent.parent


def images_per_s(root: str, epochs: int, **kw) -> float:
    loader = stoker.Loader(root, batch_size=64, transform=stoker.transforms.imagenet_train(224),
                           shuffle=True, **kw)
    rates = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["label"]) if isinstance(batch, dict) else batch
        rates.append(n / (time.perf_counter() - t0))
    loader.close()
    return statistics.median(rates[2:] if len(rates) > 2 else rates)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(REPO / "data" / "demo-imagefolder"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        subprocess.run([str(REPO / ".venv" / "bin" / "stoker"), "gen", args.root], check=True)
    runs = {"none": [], "map": [], "batch_map": []}
    for r in range(args.rounds):
        runs["none"].append(images_per_s(args.root, args.epochs))
        runs["map"].append(images_per_s(args.root, args.epochs, map=lambda s: s))
        runs["batch_map"].append(images_per_s(args.root, args.epochs,
                                              batch_map=lambda b: len(b["label"])))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in runs.items()) +
              " images/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"median images/s: without hooks {med['none']:,.0f}, map= {med['map']:,.0f} "
          f"({med['map'] / med['none']:.3f}x), batch_map= {med['batch_map']:,.0f} "
          f"({med['batch_map'] / med['none']:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
