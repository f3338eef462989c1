"""How good `stoker profile`'s what-if is: the images/s it predicts for one
more decode thread, from a 1-thread run, against a 2-thread run measured in
the same session, alternately.

    .venv/bin/python bench/whatif.py [--root data/demo-imagefolder] [--rounds 3]

Each run is `stoker profile ROOT --threads N --epochs E --no-jpeg-index
--json` (the JPEG index changes the decode cost from epoch to epoch, which a
what-if from one window cannot know). Prints each pair and the median
error; the target is within 15%.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STOKER = str(REPO / ".venv" / "bin" / "stoker")


def profile(root: str, threads: int, epochs: int) -> dict:
    out = subprocess.run([STOKER, "profile", root, "--threads", str(threads), "--epochs",
                          str(epochs), "--no-jpeg-index", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(REPO / "data" / "demo-imagefolder"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        subprocess.run([STOKER, "gen", args.root], check=True)
    errors = []
    for r in range(args.rounds):
        one = profile(args.root, 1, args.epochs)
        two = profile(args.root, 2, args.epochs)
        predicted = one["whatif"]["one_more_decode_thread_images_per_s"]
        measured = two["images_per_s"]
        errors.append(predicted / measured - 1)
        print(f"round {r}: 1 thread {one['images_per_s']:,.0f} images/s (bottleneck "
              f"{one['bottleneck']}); predicted for 2: {predicted:,.0f}; measured with 2: "
              f"{measured:,.0f}; error {errors[-1]:+.1%}")
    med = statistics.median(errors)
    print(f"median error {med:+.1%} over {args.rounds} rounds (target within 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
