"""The cache (cache_memory=, docs/cache-format.md): hit rates against LRU, and
epoch times from bandwidth-limited storage. docs/benchmarks.md "Cache".

    .venv/bin/python bench/cache_bench.py [--data DIR] [--epochs 4] [--share 0.3]
                                          [--bandwidth-mbs 50] [--cached-share 0.5]

1. Hit rate: stoker on the data set (local files), a fresh shuffle every
   epoch, cache_memory = --share of the data set's bytes: the share of each
   epoch's reads the cache answered (from stats()), against LRU with the
   same byte budget replayed over the same reads (the order the loader
   delivered, batch["index"], and the files' sizes). Target: the share,
   +- 1 point, every epoch after the first.
2. Bandwidth: the data set served from an in-memory S3 stub whose replies
   share one --bandwidth-mbs MB/s link (tests/integration/s3_fault_proxy.py's
   stub mode), read without a cache and with cache_memory = --cached-share of
   its bytes, alternately: seconds per epoch after the first (the first
   fills the cache). Target with 50 MB/s and 50% cached: <= 0.6x.
3. --decoded: validation epochs (imagenet_val(224, normalize=True), local
   files) with cache_decoded big enough for every sample, against none,
   alternately: seconds per epoch after the first.
The data set: --data, else stoker demo's 2,000 generated JPEGs (cached).
Prints one JSON object and a Markdown summary.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path

import stoker
from stoker.cli import demo

import _common  # noqa: F401  (puts tests/integration on sys.path)
from s3_servers import start_memory_s3  # noqa: E402


def lru_hits(order, sizes, budget):
    """Hits of an LRU cache of `budget` bytes replaying reads of `order`
    (sample indices) over objects of `sizes`, per epoch (a list of orders)."""
    cache, used, out = OrderedDict(), 0, []
    for epoch in order:
        hits = 0
        for i in epoch:
            if i in cache:
                cache.move_to_end(i)
                hits += 1
                continue
            if sizes[i] > budget:
                continue
            while used + sizes[i] > budget:
                _, s = cache.popitem(last=False)
                used -= s
            cache[i] = sizes[i]
            used += sizes[i]
        out.append(hits)
    return out


def hit_rates(root, epochs, share, threads):
    probe = stoker.Loader(str(root), batch_size=1)
    sizes = [os.path.getsize(probe.sample_uri(i)) for i in range(probe.num_samples)]
    probe.close()
    budget = int(sum(sizes) * share)
    loader = stoker.Loader(str(root), batch_size=64, shuffle=True, seed=0, threads=threads,
                           transform=stoker.transforms.imagenet_val(64), cache_memory=budget)
    orders, ours = [], []
    for e in range(epochs):
        loader.set_epoch(e)
        before = loader.stats()["cache_hits"]
        order = []
        for b in loader:
            order.extend(b["index"].tolist())
        orders.append(order)
        ours.append(loader.stats()["cache_hits"] - before)
    kept = loader.stats()["cache_memory_bytes"]
    loader.close()
    n = len(sizes)
    return {"budget_bytes": budget, "kept_bytes": kept, "samples": n,
            "stoker_hit_rate": [h / n for h in ours],
            "lru_hit_rate": [h / n for h in lru_hits(orders, sizes, budget)]}


def timed_epochs(uri, epochs, threads, transform, **kw):
    """Seconds per epoch of a shuffled Loader, and its stats() at the end."""
    loader = stoker.Loader(uri, batch_size=64, shuffle=True, seed=0, threads=threads,
                           transform=transform, **kw)
    secs = []
    for e in range(epochs):
        loader.set_epoch(e)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        secs.append(time.perf_counter() - t0)
    s = loader.stats()
    loader.close()
    return secs, s


def epoch_seconds(uri, endpoint, epochs, threads, cache_memory):
    secs, s = timed_epochs(uri, epochs, threads, stoker.transforms.imagenet_train(224),
                           endpoint_url=endpoint, cache_memory=cache_memory)
    return {"seconds": secs, "cache_hits": s["cache_hits"], "requests": s["requests"],
            "bytes_read": s["bytes_read"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--share", type=float, default=0.3)
    p.add_argument("--bandwidth-mbs", type=float, default=50.0)
    p.add_argument("--cached-share", type=float, default=0.5)
    p.add_argument("--decoded", action="store_true",
                   help="only the decoded cache's validation epochs")
    a = p.parse_args(argv)
    root = demo.prepare_data(a.data, demo.DEFAULT_IMAGES, demo.DEFAULT_CLASSES, demo.DEFAULT_SEED)
    demo.warm_page_cache(root)
    total = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
    if a.decoded:
        return decoded_epochs(root, a)
    out = {"data": os.fspath(root), "bytes": total, "cpus": os.cpu_count(),
           "load_before": os.getloadavg()}
    out["hit_rate"] = hit_rates(root, a.epochs, a.share, a.threads)
    runs = {"no_cache": [], "cache": []}
    with start_memory_s3(root, "bench", "data/", bandwidth_bps=a.bandwidth_mbs * 1e6) as stub:
        uri = "s3://bench/data/"
        for _ in range(a.rounds):
            runs["no_cache"].append(epoch_seconds(uri, stub.endpoint, a.epochs, a.threads, 0))
            runs["cache"].append(epoch_seconds(uri, stub.endpoint, a.epochs, a.threads,
                                               int(total * a.cached_share)))
    out["bandwidth"] = runs
    out["load_after"] = os.getloadavg()
    steady = {k: statistics.median(s for r in v for s in r["seconds"][1:]) for k, v in runs.items()}
    out["steady_seconds"] = steady
    print(json.dumps(out))
    hr = out["hit_rate"]
    print(f"\n| epoch | stoker hit rate | LRU hit rate |\n|---:|---:|---:|")
    for e, (x, y) in enumerate(zip(hr["stoker_hit_rate"], hr["lru_hit_rate"])):
        print(f"| {e} | {x:.1%} | {y:.1%} |")
    print(f"\nbudget {a.share:.0%} of {total / 1e6:.1f} MB; kept {hr['kept_bytes'] / 1e6:.1f} MB")
    print(f"\nstorage at {a.bandwidth_mbs:g} MB/s, {a.cached_share:.0%} cached: epoch (after the "
          f"first) {steady['cache']:.2f} s against {steady['no_cache']:.2f} s without the cache: "
          f"{steady['cache'] / steady['no_cache']:.2f}x (target <= 0.6x)")
    print(f"load average {out['load_before'][0]:.1f} -> {out['load_after'][0]:.1f}")


def val_seconds(uri, epochs, threads, decoded):
    secs, s = timed_epochs(uri, epochs, threads,
                           stoker.transforms.imagenet_val(224, normalize=True),
                           cache_decoded=decoded)
    return {"seconds": secs, "decoded_cache_hits": s["decoded_cache_hits"],
            "decoded_cache_bytes": s["decoded_cache_bytes"]}


def decoded_epochs(root, a):
    runs = {"no_cache": [], "cache_decoded": []}
    load = os.getloadavg()[0]
    for _ in range(a.rounds):
        runs["no_cache"].append(val_seconds(str(root), a.epochs, a.threads, 0))
        runs["cache_decoded"].append(val_seconds(str(root), a.epochs, a.threads, 8 << 30))
    steady = {k: statistics.median(s for r in v for s in r["seconds"][1:]) for k, v in runs.items()}
    first = {k: statistics.median(r["seconds"][0] for r in v) for k, v in runs.items()}
    print(json.dumps({"decoded": runs, "steady_seconds": steady, "first_seconds": first}))
    kept = runs["cache_decoded"][0]["decoded_cache_bytes"]
    print(f"\nvalidation epochs (imagenet_val(224), float32, {a.threads} threads), "
          f"{a.rounds} rounds of {a.epochs} epochs: epoch 0 {first['cache_decoded']:.2f} s with "
          f"cache_decoded against {first['no_cache']:.2f} s; epochs after the first "
          f"{steady['cache_decoded']:.3f} s against {steady['no_cache']:.2f} s: "
          f"{steady['no_cache'] / steady['cache_decoded']:.1f}x faster; kept {kept / 1e6:,.0f} MB")
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
