"""Compose benchmarks: docs/benchmarks.md "Transforms by composition".

    .venv/bin/python bench/compose_bench.py [--data DIR] [--epochs 3] [--rounds 3] [--threads 2]

(a) imagenet_train(224, normalize=True) against the same ops written as an
    explicit Compose: alternating, `rounds` times each, images/s the median
    of each run's epochs; the ratio of the medians (target: within 3%).
(b) a Compose with ColorJitter (RandomResizedCrop(224), flip,
    ColorJitter(0.4, 0.4, 0.4, 0.1), ToDtype, Normalize) run by stoker
    against PyTorch's DataLoader (--workers, default 2) running the same
    Compose under the peer interpreter (.venv-peer; bench/peers/torch_dataloader.py
    --jitter). Target: stoker >= 3x.
The dataset: --data, else stoker demo's 2,000 generated JPEGs (cached).
Prints one JSON object and a Markdown summary.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import stoker
from stoker import transforms as T
from stoker.cli import demo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_compare  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def epochs_per_s(root, transform, epochs, threads, batch_size):
    """(median images/s over the epochs, CPU ms per image of the process,
    all threads): the CPU figure is the one other work on the machine
    disturbs least."""
    loader = stoker.Loader(str(root), batch_size=batch_size, transform=transform, shuffle=True,
                           seed=0, threads=threads)
    rates, cpu, images = [], 0.0, 0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        for b in loader:
            n += int(b["label"].shape[0])
        rates.append(n / (time.perf_counter() - t0))
        cpu += time.process_time() - c0
        images += n
    loader.close()
    return statistics.median(rates), cpu / images * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", default="2")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--peer-python")
    p.add_argument("--skip-peer", action="store_true")
    a = p.parse_args(argv)
    threads = a.threads if a.threads == "auto" else int(a.threads)
    root = demo.prepare_data(a.data, demo.DEFAULT_IMAGES, demo.DEFAULT_CLASSES, demo.DEFAULT_SEED)
    demo.warm_page_cache(root)

    preset = T.imagenet_train(224, normalize=True)
    explicit = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                          T.ToDtype("float32", scale=True), T.Normalize(MEAN, STD)],
                         fast_decode=True)
    jitter = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(),
                        T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.ToDtype("float32", scale=True),
                        T.Normalize(MEAN, STD)], fast_decode=True)
    runs = {"preset": [], "compose": []}
    for _ in range(a.rounds):
        for name, t in (("preset", preset), ("compose", explicit)):
            runs[name].append(epochs_per_s(root, t, a.epochs, threads, a.batch_size))
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
           for k, v in runs.items()}
    pre, com = med["preset"][0], med["compose"][0]
    out = {"data": os.fspath(root), "threads": a.threads, "epochs": a.epochs, "rounds": a.rounds,
           "cpus": os.cpu_count(), "load_before": os.getloadavg(),
           "preset": runs["preset"], "compose": runs["compose"],
           "compose_over_preset_images_per_s": com / pre,
           "compose_over_preset_cpu_per_image": med["compose"][1] / med["preset"][1]}
    jr = [epochs_per_s(root, jitter, a.epochs, threads, a.batch_size) for _ in range(a.rounds)]
    jit = [r[0] for r in jr]
    jit_cpu = statistics.median(r[1] for r in jr)
    out["jitter"] = jr
    if not a.skip_peer:
        py = demo_compare.resolve_peer_python(a.peer_python)
        cmd = [py, str(Path(__file__).resolve().parent / "peers" / "torch_dataloader.py"),
               os.fspath(root), "--json", "--epochs", str(a.epochs), "--batch-size",
               str(a.batch_size), "--workers", str(a.workers), "--jitter"]
        peer = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        out["peer"] = {k: peer[k] for k in ("peer", "torch", "torchvision", "workers",
                                            "images_per_s", "cpu_s_per_image")}
        out["jitter_over_peer"] = statistics.median(jit) / peer["images_per_s"]
        out["peer_cpu_over_jitter_cpu"] = peer["cpu_s_per_image"] * 1e3 / jit_cpu
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    print(f"\n(a) imagenet_train preset {pre:.0f} img/s {med['preset'][1]:.2f} CPU-ms/img, "
          f"explicit Compose {com:.0f} img/s {med['compose'][1]:.2f} CPU-ms/img: ratios "
          f"{com / pre:.3f} (img/s), {med['compose'][1] / med['preset'][1]:.3f} (CPU/img) "
          f"(medians of {a.rounds} runs x {a.epochs} epochs, threads={a.threads})")
    msg = (f"(b) Compose with ColorJitter: stoker {statistics.median(jit):.0f} img/s "
           f"{jit_cpu:.2f} CPU-ms/img")
    if "peer" in out:
        msg += (f", torch DataLoader ({a.workers} workers) {out['peer']['images_per_s']:.0f} img/s "
                f"{out['peer']['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img: {out['jitter_over_peer']:.2f}x "
                f"images/s, {out['peer_cpu_over_jitter_cpu']:.2f}x less CPU per image")
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
