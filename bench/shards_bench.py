"""Shard datasets against the original files: docs/benchmarks.md "Shards".

    .venv/bin/python bench/shards_bench.py [--data DIR] [--epochs 4] [--rounds 3] [--threads 2]

1. `stoker convert` of the data set (local to local, threads one per core):
   samples/s, bytes in and out (target: >= 1,000 images/s on 2 cores).
2. RandomResizedCrop 224 + flip + normalise, `threads` decode threads,
   alternately on the original files with the JPEG index at ImageNet-scale
   coverage (jpeg_index_mb=1, about 1% of an ImageNet-sized dataset held, as
   at scale) and on the shards (order="sample": the same per-sample order):
   images/s of epoch 0 and of the later epochs (steady state), each the
   median over rounds, and CPU per image (targets: shards >= 1.3x in epoch 0,
   >= 1.25x steady). For reference, the files again with every file's MCU
   grid in memory (jpeg_index_mb=1024: the demo set's 22.6 MB; from epoch 2).
3. With --s3-latency-ms MS: the shards from an in-memory S3 stub
   (bench/s3_stub.cc, one epoll thread) adding MS to every request, read in
   the chunk-aware order (the default for shards) by the index's URI,
   against the same shards read locally in the same order, alternately:
   images/s per epoch and requests per epoch (targets: >= 0.95x local,
   <= N/50 requests per epoch).
4. With --max-size PX: a second, lossy conversion (images shrunk to PX on
   their longer side), read as the shards are (target with 256: >= 8x
   PyTorch's DataLoader on the original files).
5. With --peer: PyTorch's DataLoader (2 workers) on the original files
   (bench/peers/torch_dataloader.py under .venv-peer): shards / DataLoader
   (target >= 4.3x).
The dataset: --data, else stoker demo's 2,000 generated JPEGs (cached).
Prints one JSON object and a Markdown summary.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import stoker
from stoker.cli import demo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: F401,E402  (puts tests/integration on sys.path)
import demo_compare  # noqa: E402


def run(uri, epochs, threads, batch_size, server=None, **kw):
    """Per-epoch images/s, CPU-ms per image (the whole process), requests
    and, with `server`, the CPU-ms per image the S3 stub took."""
    tf = stoker.transforms.imagenet_train(224, normalize=True)
    loader = stoker.Loader(str(uri), batch_size=batch_size, transform=tf, shuffle=True, seed=0,
                           threads=threads, **kw)
    rates, cpus, requests, server_cpus = [], [], [], []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        r0 = loader.stats()["requests"]
        s0 = server.cpu_seconds() if server is not None else 0.0
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        for b in loader:
            n += int(b["label"].shape[0])
        rates.append(n / (time.perf_counter() - t0))
        cpus.append((time.process_time() - c0) / n * 1e3)
        requests.append(loader.stats()["requests"] - r0)
        if server is not None:
            server_cpus.append((server.cpu_seconds() - s0) / n * 1e3)
    loader.close()
    return {"rates": rates, "cpu_ms": cpus, "requests": requests, "server_cpu_ms": server_cpus}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data")
    p.add_argument("--shards", help="converted copy (default: a temporary folder, made anew)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--index-mb", type=int, default=1)
    p.add_argument("--s3-latency-ms", type=float, default=None)
    p.add_argument("--s3-only", action="store_true", help="skip the local comparison (2.)")
    p.add_argument("--window-pages", type=int, default=16,
                   help="chunk order: pages open at once (2x this many held from S3)")
    p.add_argument("--max-size", type=int, default=None)
    p.add_argument("--peer", action="store_true")
    p.add_argument("--peer-python")
    a = p.parse_args(argv)
    root = demo.prepare_data(a.data, demo.DEFAULT_IMAGES, demo.DEFAULT_CLASSES, demo.DEFAULT_SEED)
    demo.warm_page_cache(root)
    tmp = None
    dst = a.shards
    if dst is None:
        tmp = tempfile.mkdtemp(prefix="stoker-shards-")
        dst = os.path.join(tmp, "shards")
    out = {"data": os.fspath(root), "threads": a.threads, "epochs": a.epochs, "rounds": a.rounds,
           "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    try:
        c0 = time.process_time()
        conv = stoker.convert(root, dst)
        out["convert"] = {k: conv[k] for k in ("samples_done", "samples_skipped", "bytes_in",
                                                "bytes_out", "seconds", "jpegs_indexed")}
        out["convert"]["samples_per_s"] = conv["samples_done"] / conv["seconds"]
        out["convert"]["cpu_ms_per_sample"] = (time.process_time() - c0) / conv["samples_done"] * 1e3
        demo.warm_page_cache(dst)
        runs = {"files": [], "shards": [], "files_full_index": []}
        for _ in range(0 if a.s3_only else a.rounds):
            runs["files"].append(run(root, a.epochs, a.threads, a.batch_size,
                                     jpeg_index_mb=a.index_mb))
            # For reference: every file's MCU grid held in memory (from epoch 2).
            runs["files_full_index"].append(run(root, a.epochs, a.threads, a.batch_size,
                                                jpeg_index_mb=1024))
            runs["shards"].append(run(dst, a.epochs, a.threads, a.batch_size, order="sample"))
        if a.max_size:
            small = dst + f"-max{a.max_size}"
            sc = stoker.convert(root, small, max_size=a.max_size)
            out["convert_max_size"] = {k: sc[k] for k in ("samples_done", "images_shrunk",
                                                           "bytes_out", "seconds")}
            demo.warm_page_cache(small)
            runs["shards_max_size"] = [run(small, a.epochs, a.threads, a.batch_size,
                                           order="sample") for _ in range(a.rounds)]
        if a.s3_latency_ms is not None:
            from s3_servers import CREDENTIALS, start_memory_s3
            for k, v in CREDENTIALS.items():
                os.environ.setdefault(k, v)
            runs["shards_local_chunk"], runs["shards_s3"] = [], []
            with start_memory_s3(dst, "stub", "shards/", a.s3_latency_ms, impl="cpp") as stub:
                uri = "s3://stub/shards/index.stoker"
                for _ in range(a.rounds):
                    runs["shards_local_chunk"].append(run(dst, a.epochs, a.threads, a.batch_size,
                                                          window_pages=a.window_pages))
                    runs["shards_s3"].append(run(uri, a.epochs, a.threads, a.batch_size,
                                                 server=stub, endpoint_url=stub.endpoint,
                                                 window_pages=a.window_pages))
        runs = {k: v for k, v in runs.items() if v}
        out["runs"] = runs
        med = {}
        for k, v in runs.items():
            med[k] = {"epoch0": statistics.median(r["rates"][0] for r in v),
                      "steady": statistics.median(statistics.mean(r["rates"][1:]) for r in v),
                      "cpu_ms_epoch0": statistics.median(r["cpu_ms"][0] for r in v),
                      "cpu_ms_steady": statistics.median(statistics.mean(r["cpu_ms"][1:]) for r in v),
                      "requests_per_epoch": statistics.median(statistics.mean(r["requests"][1:])
                                                              for r in v)}
        out["median"] = med
        if "files" in med:
            out["shards_over_files_epoch0"] = med["shards"]["epoch0"] / med["files"]["epoch0"]
            out["shards_over_files_steady"] = med["shards"]["steady"] / med["files"]["steady"]
        if runs.get("shards_s3"):
            med["shards_s3"]["stub_cpu_ms_steady"] = statistics.median(
                statistics.mean(r["server_cpu_ms"][1:]) for r in runs["shards_s3"])
        if "shards_s3" in med:
            out["s3_over_local_epoch0"] = med["shards_s3"]["epoch0"] / med["shards_local_chunk"]["epoch0"]
            out["s3_over_local_steady"] = med["shards_s3"]["steady"] / med["shards_local_chunk"]["steady"]
        if a.peer:
            py = demo_compare.resolve_peer_python(a.peer_python)
            peer = demo_compare.run_peer(py, root, epochs=a.epochs, batch_size=a.batch_size)
            out["peer"] = {k: peer.get(k) for k in ("peer", "workers", "images_per_s",
                                                    "cpu_s_per_image")}
            if "shards" in med:
                out["shards_over_peer"] = med["shards"]["steady"] / peer["images_per_s"]
            if "shards_max_size" in med:
                out["max_size_over_peer"] = med["shards_max_size"]["steady"] / peer["images_per_s"]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    c = out["convert"]
    print(f"\nconvert: {c['samples_done']:,} samples in {c['seconds']:.2f} s = "
          f"{c['samples_per_s']:,.0f}/s, {c['cpu_ms_per_sample']:.2f} CPU-ms each, "
          f"{c['bytes_in'] / 2**20:.1f} MiB in, {c['bytes_out'] / 2**20:.1f} MiB out")
    print("| | epoch 0 img/s | steady img/s | CPU-ms/img epoch 0 | steady | requests/epoch |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, name in (("files", f"files, jpeg_index_mb={a.index_mb}"),
                    ("shards", "shards (order='sample')"),
                    ("files_full_index", "files, every grid in memory (jpeg_index_mb=1024)"),
                    ("shards_max_size", f"shards, --max-size {a.max_size}"),
                    ("shards_local_chunk", "shards, local, chunk order"),
                    ("shards_s3", f"shards, S3 stub +{a.s3_latency_ms} ms, chunk order")):
        if k not in med:
            continue
        m = med[k]
        print(f"| {name} | {m['epoch0']:,.0f} | {m['steady']:,.0f} | {m['cpu_ms_epoch0']:.2f} | "
              f"{m['cpu_ms_steady']:.2f} | {m['requests_per_epoch']:,.0f} |")
    if "shards_over_files_epoch0" in out:
        print(f"shards / files: epoch 0 {out['shards_over_files_epoch0']:.2f}x, steady "
              f"{out['shards_over_files_steady']:.2f}x")
    if "shards_s3" in med:
        print(f"the S3 stub's own CPU (same machine): {med['shards_s3']['stub_cpu_ms_steady']:.2f} "
              f"CPU-ms per image, steady")
    if "s3_over_local_epoch0" in out:
        print(f"S3 / local shards: epoch 0 {out['s3_over_local_epoch0']:.2f}x, steady "
              f"{out['s3_over_local_steady']:.2f}x")
    if "peer" in out:
        print(f"DataLoader ({out['peer']['workers']} workers) on the files: "
              f"{out['peer']['images_per_s']:,.0f} img/s, "
              f"{out['peer']['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img")
        for k, name in (("shards_over_peer", "shards"), ("max_size_over_peer", "--max-size shards")):
            if k in out:
                print(f"{name} / DataLoader: {out[k]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
