"""Restoring a state_dict costs the same at 1% and at 99% of an epoch.

A manifest of 10^6 entries (pointing at a few real JPEGs, so no dataset of
that size is needed on disk); a shuffled loader is restored at 1% and at 99%
of epoch 3 and we time load_state_dict() and the first batch after it.

    .venv/bin/python bench/resume_bench.py [--entries 1000000] [--repeat 5]
"""
import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

import stoker


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(8):
            arr = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=90)
            with open(os.path.join(tmp, f"{i}.jpg"), "wb") as f:
                f.write(buf.getvalue())
        manifest = os.path.join(tmp, "m.csv")
        with open(manifest, "w") as f:
            f.write("path,label\n")
            f.writelines(f"{i % 8}.jpg,{i % 1000}\n" for i in range(args.entries))

        def make():
            return stoker.Loader(manifest, batch_size=args.batch_size, shuffle=True, seed=0,
                                 transform=stoker.transforms.imagenet_train(224))

        t0 = time.perf_counter()
        loader = make()
        open_s = time.perf_counter() - t0
        n = loader.num_samples
        rows = []
        for frac in (0.01, 0.99):
            position = int(n * frac) // args.batch_size * args.batch_size
            state = {"version": 1, "seed": 0, "shuffle": True, "num_samples": n,
                     "epoch": 3, "position": position}
            load_s, first_s = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                loader.load_state_dict(state)
                loader.set_epoch(3)
                t1 = time.perf_counter()
                batch = next(iter(loader))
                t2 = time.perf_counter()
                load_s.append(t1 - t0)
                first_s.append(t2 - t1)
                assert len(batch["index"]) == args.batch_size
            rows.append((frac, position, statistics.median(load_s), statistics.median(first_s)))

    print(f"manifest of {n:,} entries, opened (listed) in {open_s:.2f} s; "
          f"median of {args.repeat} restores\n")
    print("| restored at | global position | load_state_dict | first batch after it |")
    print("|---|---:|---:|---:|")
    for frac, pos, load, first in rows:
        print(f"| {frac:.0%} of epoch 3 | {pos:,} | {load * 1e6:.0f} us | {first * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
