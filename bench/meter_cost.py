"""What the metrics registry's meters cost: images/s of the same C++ loader
built with the meters (build/cpp) and without them (-DSTOKER_METERS=OFF, in
build/meters-off), run alternately on the same dataset in one run.

    .venv/bin/python bench/meter_cost.py [--root data/demo-imagefolder] [--rounds 5]

Each run is `stoker_example_loader ROOT EPOCHS THREADS` (RandomResizedCrop
224 + flip + normalise, batch 64); its epochs after the first two (the JPEG
index's walk) give its images/s. Prints the median of each build and the
ratio (without / with); the target is at most 1.01.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CMAKE = REPO / ".venv" / "bin" / "cmake"
NINJA = REPO / ".venv" / "bin" / "ninja"


def build(folder: Path, meters: bool) -> Path:
    subprocess.run([str(CMAKE), "-S", str(REPO), "-B", str(folder), "-G", "Ninja",
                    f"-DCMAKE_MAKE_PROGRAM={NINJA}", "-DCMAKE_BUILD_TYPE=Release",
                    f"-DSTOKER_METERS={'ON' if meters else 'OFF'}", "-DSTOKER_BUILD_TESTS=OFF"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(CMAKE), "--build", str(folder), "--target", "stoker_example_loader"],
                   check=True, stdout=subprocess.DEVNULL)
    return folder / "examples" / "cpp" / "stoker_example_loader"


def images_per_s(binary: Path, root: str, epochs: int, threads: int) -> float:
    out = subprocess.run([str(binary), root, str(epochs), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    rates = [float(m) for m in re.findall(r"([\d.]+) images/s", out)]
    return statistics.median(rates[2:] if len(rates) > 2 else rates)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(REPO / "data" / "demo-imagefolder"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: one per core")
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        subprocess.run([str(REPO / ".venv" / "bin" / "stoker"), "gen", args.root], check=True)
    on = build(REPO / "build" / "meters-on", True)
    off = build(REPO / "build" / "meters-off", False)
    with_m, without = [], []
    for r in range(args.rounds):
        with_m.append(images_per_s(on, args.root, args.epochs, args.threads))
        without.append(images_per_s(off, args.root, args.epochs, args.threads))
        print(f"round {r}: with meters {with_m[-1]:,.0f} images/s, without {without[-1]:,.0f}",
              file=sys.stderr)
    m_on, m_off = statistics.median(with_m), statistics.median(without)
    print(f"median images/s: with meters {m_on:,.0f}, without {m_off:,.0f}; "
          f"cost {(m_off / m_on - 1) * 100:+.2f}% (target <= +1%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
