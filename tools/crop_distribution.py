#!/usr/bin/env python3
"""The distribution of torchvision's RandomResizedCrop on a 500x375 image:
where the constants of RandomResizedCropTest.DistributionMatchesTorchvision
(src/stoker/transform/transform_test.cc) come from.

Draws crops with torchvision's get_params (scale (0.08, 1), ratio (3/4, 4/3))
and prints, with standard errors, what the C++ test averages over its own
draws: the crop's area as a fraction of the image, log(w / h), the crop
centre's x and y as fractions, and the share of crops under 30% of the
image.

    tools/crop_distribution.py [--draws 200000] [--seed 0]
        A line-by-line copy of torchvision 0.29's get_params on NumPy's
        generator: runs anywhere NumPy does (this is how the constants were
        made: 200,000 draws, seed 0).
    .venv-peer/bin/python tools/crop_distribution.py --torchvision
        torchvision's own RandomResizedCrop.get_params (torch's generator).
    ... --check src/stoker/transform/transform_test.cc
        Also reads the constants from the C++ test and exits 1 unless each
        lies within 4 standard errors (of this run) of what was drawn here.

`make test-torchvision` runs the --torchvision --check form.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

WIDTH, HEIGHT = 500, 375
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)

# The C++ test's statistics, in its order, and the regex that finds each
# constant in its EXPECT_NEAR(<expression> / n, <constant>, <tolerance>).
STATS = {
    "area": r"EXPECT_NEAR\(area / n, ([0-9.]+),",
    "log_ratio": r"EXPECT_NEAR\(log_ratio / n, ([0-9.]+),",
    "small": r"EXPECT_NEAR\(small / n, ([0-9.]+),",
    "cx": r"EXPECT_NEAR\(cx / n, ([0-9.]+),",
    "cy": r"EXPECT_NEAR\(cy / n, ([0-9.]+),",
}


def numpy_get_params(rng, width, height, scale, ratio):
    """torchvision 0.29 RandomResizedCrop.get_params, line by line, with
    NumPy's generator in place of torch's. Returns (top, left, h, w)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return i, j, h, w
    # Fallback to central crop
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:  # whole image
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


def draw(n, seed, use_torchvision):
    if use_torchvision:
        import torch
        from PIL import Image
        from torchvision.transforms import RandomResizedCrop

        torch.manual_seed(seed)
        img = Image.new("RGB", (WIDTH, HEIGHT))
        for _ in range(n):
            yield RandomResizedCrop.get_params(img, list(SCALE), list(RATIO))
    else:
        import numpy as np

        rng = np.random.default_rng(seed)
        for _ in range(n):
            yield numpy_get_params(rng, WIDTH, HEIGHT, SCALE, RATIO)


def statistics(n, seed, use_torchvision):
    """{name: (mean, standard error)} over n draws."""
    sums = {k: 0.0 for k in STATS}
    squares = {k: 0.0 for k in STATS}
    for top, left, h, w in draw(n, seed, use_torchvision):
        values = {
            "area": w * h / (WIDTH * HEIGHT),
            "log_ratio": math.log(w / h),
            "small": 1.0 if w * h < 0.3 * WIDTH * HEIGHT else 0.0,
            "cx": (left + w / 2) / WIDTH,
            "cy": (top + h / 2) / HEIGHT,
        }
        for k, v in values.items():
            sums[k] += v
            squares[k] += v * v
    out = {}
    for k in STATS:
        mean = sums[k] / n
        var = max(0.0, squares[k] / n - mean * mean)
        out[k] = (mean, math.sqrt(var / n))
    return out


def constants_in(path):
    text = open(path, encoding="utf-8").read()
    found = {}
    for k, pattern in STATS.items():
        m = re.search(pattern, text)
        if not m:
            raise SystemExit(f"{path}: no EXPECT_NEAR for {k} (pattern {pattern!r})")
        found[k] = float(m.group(1))
    return found


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torchvision", action="store_true",
                    help="draw with torchvision's own get_params (needs torch + torchvision)")
    ap.add_argument("--check", metavar="TRANSFORM_TEST_CC",
                    help="exit 1 unless the C++ test's constants are within 4 standard errors")
    args = ap.parse_args(argv)

    source = "torchvision.transforms.RandomResizedCrop.get_params" if args.torchvision else \
        "a copy of torchvision 0.29's get_params on NumPy's generator"
    if args.torchvision:
        import torchvision
        source += f" (torchvision {torchvision.__version__})"
    stats = statistics(args.draws, args.seed, args.torchvision)
    print(f"{args.draws} draws on {WIDTH}x{HEIGHT}, seed {args.seed}, {source}:")
    for k, (mean, se) in stats.items():
        print(f"  {k:10s} mean {mean:.4f}  standard error {se:.4f}")
    if not args.check:
        return 0
    bad = 0
    for k, constant in constants_in(args.check).items():
        mean, se = stats[k]
        ok = abs(constant - mean) <= 4 * se
        bad += not ok
        print(f"  {args.check}: {k} = {constant} {'within' if ok else 'NOT within'} "
              f"4 standard errors of {mean:.4f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
