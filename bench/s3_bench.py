"""stoker from S3 vs stoker from local disk vs a boto3-per-sample PyTorch
DataLoader, in one run, on the same data and machine.

    .venv/bin/python bench/s3_bench.py [--latency-ms 20] [--epochs 5] [--no-jpeg-index]
                                       [--stub cpp|python] [--json]

Generates (or reuses) the demo ImageFolder (2,000 ImageNet-like JPEGs),
uploads it to moto (an S3-compatible server, in server mode on loopback) and
puts the fault proxy (tests/integration/s3_fault_proxy.py), adding a fixed
latency to every request, in front of it. Then measures:

1. stoker from local disk: imagenet_train(224, normalize=True), batch 64,
   2 decode threads, shuffled; images/s per epoch after the warm-up epochs
   (one; two with the JPEG index, whose second epoch walks every file);
2. the same from s3://bucket/prefix/ through the proxy;
3. time to first batch from a cold start (a new Loader: ListObjectsV2 over
   the 2,000-object prefix, new connections, the first 64 objects);
4. PyTorch's DataLoader (2 workers, batch 64, shuffled) whose Dataset calls
   boto3 get_object per sample and decodes with Pillow + the same
   transforms (bench/peers/torch_dataloader.py's Pillow re-implementation of
   torchvision's), through the same proxy;

and the CPU time that moto and the proxy take meanwhile (from /proc): they
share the machine's cores with the loader. moto costs milliseconds of CPU
per GET, so on a small machine it, not the loader, sets the S3 rate. A real
object store spends none of the loader's cores; to show what the loader
does then, steps 2-4 are repeated against an in-memory S3 stub with the
same added latency: bench/s3_stub.cc (one epoll thread, built by `make
build`), or with --stub python the fault proxy's own stub mode (asyncio,
several times the CPU per request). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time

from _common import REPO, UVLOOP, default_stub, log  # also puts tests/integration on sys.path
from s3_servers import (CREDENTIALS, s3_client, start_memory_s3, start_moto,  # noqa: E402
                        start_proxy, upload_tree)


def process_cpu():
    t = os.times()
    return t.user + t.system


class CpuWatch:
    """CPU seconds used by this process, moto and the proxy over a phase."""

    def __init__(self, moto, proxy):
        self.moto, self.proxy = moto, proxy

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.c0 = (process_cpu(), self.moto.cpu_seconds(), self.proxy.cpu_seconds())
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        c1 = (process_cpu(), self.moto.cpu_seconds(), self.proxy.cpu_seconds())
        self.loader_cpu, self.moto_cpu, self.proxy_cpu = (b - a for a, b in zip(self.c0, c1))


def stoker_epochs(uri, args, endpoint=None):
    import stoker

    loader = stoker.Loader(uri, batch_size=args.batch_size, shuffle=True, seed=0,
                           transform=stoker.transforms.imagenet_train(224, normalize=True),
                           threads=args.threads, endpoint_url=endpoint, on_error="raise",
                           jpeg_index=args.jpeg_index)
    rows = []
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        t0, c0 = time.perf_counter(), process_cpu()
        n = 0
        for batch in loader:
            n += int(batch["label"].shape[0])
        wall = time.perf_counter() - t0
        rows.append({"epoch": epoch, "images": n, "wall_s": wall, "images_per_s": n / wall,
                     "cpu_s": process_cpu() - c0})
        log(f"  epoch {epoch}: {n} images, {n / wall:.0f} img/s")
    stats = loader.stats()
    loader.close()
    return rows, stats


def steady(rows, warmup):
    """Median images/s and CPU per image over the epochs after the first
    `warmup` (with the JPEG index, epoch 1 walks every file once)."""
    measured = rows[warmup:] or rows
    ips = statistics.median(r["images_per_s"] for r in measured)
    cpu = sum(r["cpu_s"] for r in measured) / sum(r["images"] for r in measured)
    return ips, cpu


def first_batch_s(uri, endpoint, args):
    import stoker

    t0 = time.perf_counter()
    loader = stoker.Loader(uri, batch_size=args.batch_size, shuffle=True, seed=0,
                           transform=stoker.transforms.imagenet_train(224, normalize=True),
                           threads=args.threads, endpoint_url=endpoint)
    listed = time.perf_counter() - t0
    it = iter(loader)
    next(it)
    total = time.perf_counter() - t0
    loader.close()
    return total, listed


class Boto3ImageFolder:
    """A torch Dataset that GETs each sample with boto3, as the
    ConcurrentDataloader paper's baseline does: one request per sample, no
    concurrency within a worker. Decodes with Pillow; the transforms are the
    Pillow re-implementation of torchvision's in bench/peers/."""

    def __init__(self, endpoint, bucket, keys, labels, transform):
        self.endpoint, self.bucket = endpoint, bucket
        self.keys, self.labels, self.transform = keys, labels, transform
        self._client = None

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        from PIL import Image

        if self._client is None:  # one client per worker process, made after the fork
            self._client = s3_client(self.endpoint)
        body = self._client.get_object(Bucket=self.bucket, Key=self.keys[i])["Body"].read()
        img = Image.open(io.BytesIO(body)).convert("RGB")
        return self.transform(img), self.labels[i]


def boto3_dataloader(endpoint, bucket, prefix, args):
    import torch
    from peers import torch_dataloader as peer  # bench/peers, beside this script

    client = s3_client(endpoint)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    keys = sorted(k for k in keys if k.lower().endswith(peer.IMG_EXTENSIONS) and
                  "/" in k[len(prefix):])
    classes = sorted({k[len(prefix):].split("/")[0] for k in keys})
    labels = [classes.index(k[len(prefix):].split("/")[0]) for k in keys]
    tf = peer.PillowCompose([
        peer.PillowRandomResizedCrop(224), peer.PillowRandomHorizontalFlip(),
        peer.PillowToTensor(), peer.PillowNormalize(peer.IMAGENET_MEAN, peer.IMAGENET_STD)])
    ds = Boto3ImageFolder(endpoint, bucket, keys, labels, tf)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.peer_workers)
    n = 0
    t0 = time.perf_counter()
    for batch in loader:
        n += int(batch[1].shape[0])
        if args.peer_images and n >= args.peer_images:
            break
    wall = time.perf_counter() - t0
    return n, wall


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(REPO / "data" / "demo-imagefolder"),
                    help="the demo ImageFolder (generated there if missing)")
    ap.add_argument("--n-images", type=int, default=2000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--epochs", type=int, default=5,
                    help="stoker epochs (the first, or the first two with the JPEG index, "
                         "are warm-up)")
    ap.add_argument("--jpeg-index", action=argparse.BooleanOptionalAction, default=True,
                    help="the Loader's jpeg_index (default: on, as in the Loader)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--first-batch-trials", type=int, default=3)
    ap.add_argument("--peer-workers", type=int, default=2)
    ap.add_argument("--peer-images", type=int, default=0,
                    help="stop the boto3 DataLoader after this many images (0: one epoch)")
    ap.add_argument("--stub", choices=("cpp", "python"), default=None,
                    help="the in-memory S3 stub (default: cpp where make build built it)")
    ap.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    args = ap.parse_args(argv)
    args.stub = default_stub(args.stub)

    import stoker
    from stoker import datagen

    for k, v in CREDENTIALS.items():
        os.environ.setdefault(k, v)
    root = datagen.make_imagefolder(args.root, n_images=args.n_images, verbose=True)
    load0 = os.getloadavg()
    bucket, prefix = "bench", "imagenet/train/"
    uri = f"s3://{bucket}/{prefix}"
    out = {"latency_ms": args.latency_ms, "n_images": args.n_images, "cpus": os.cpu_count(),
           "loadavg_before": load0}
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(start_moto())
        client = s3_client(moto.endpoint)
        client.create_bucket(Bucket=bucket)
        t0 = time.perf_counter()
        n = upload_tree(client, bucket, root, prefix)
        log(f"uploaded {n} objects to moto in {time.perf_counter() - t0:.1f} s")
        proxy = stack.enter_context(start_proxy(moto.port, latency_ms=args.latency_ms,
                                                uvloop=UVLOOP))
        stub = stack.enter_context(start_memory_s3(root, "stub", prefix, args.latency_ms,
                                                   uvloop=UVLOOP, impl=args.stub))
        stub_uri = f"s3://stub/{prefix}"
        # Local disk and the stub one after the other: the two rows that the
        # 0.9x target compares see the machine in the same state.
        log("stoker, local disk:")
        with CpuWatch(moto, proxy) as w_local:
            local_rows, _ = stoker_epochs(str(root), args)
        log(f"stoker, in-memory S3 stub ({args.stub}, +{args.latency_ms:g} ms per request):")
        with CpuWatch(stub, stub) as w_stub:
            stub_rows, _ = stoker_epochs(stub_uri, args, stub.endpoint)
        log(f"stoker, S3 via proxy (+{args.latency_ms:g} ms per request):")
        with CpuWatch(moto, proxy) as w_s3:
            s3_rows, s3_stats = stoker_epochs(uri, args, proxy.endpoint)
        firsts, stub_firsts = [], []
        for name, trials, u, endpoint in (("moto", firsts, uri, proxy.endpoint),
                                          ("stub", stub_firsts, stub_uri, stub.endpoint)):
            log(f"time to first batch, cold start ({name}):")
            for _ in range(args.first_batch_trials):
                trials.append(first_batch_s(u, endpoint, args))
                log(f"  {trials[-1][0]:.3f} s (listing {trials[-1][1]:.3f} s)")
        log(f"PyTorch DataLoader, boto3 get_object per sample, {args.peer_workers} workers "
            "(moto):")
        with CpuWatch(moto, proxy) as w_peer:
            peer_n, peer_wall = boto3_dataloader(proxy.endpoint, bucket, prefix, args)
        log(f"  {peer_n} images, {peer_n / peer_wall:.1f} img/s")
        log(f"PyTorch DataLoader, boto3 get_object per sample, {args.peer_workers} workers "
            "(stub):")
        with CpuWatch(stub, stub) as w_stub_peer:
            stub_peer_n, stub_peer_wall = boto3_dataloader(stub.endpoint, "stub", prefix, args)
        log(f"  {stub_peer_n} images, {stub_peer_n / stub_peer_wall:.1f} img/s")
    load1 = os.getloadavg()

    warmup = 2 if args.jpeg_index else 1
    local_ips, local_cpu = steady(local_rows, warmup)
    s3_ips, s3_cpu = steady(s3_rows, warmup)
    stub_ips, stub_cpu = steady(stub_rows, warmup)
    peer_ips = peer_n / peer_wall
    stub_peer_ips = stub_peer_n / stub_peer_wall
    first_total = statistics.median(f[0] for f in firsts)
    first_list = statistics.median(f[1] for f in firsts)
    stub_first = statistics.median(f[0] for f in stub_firsts)
    stub_first_list = statistics.median(f[1] for f in stub_firsts)

    def cores(w, attr):
        return getattr(w, attr) / w.wall

    out.update({
        "local": {"epochs": local_rows, "images_per_s": local_ips, "cpu_s_per_image": local_cpu},
        "s3": {"epochs": s3_rows, "images_per_s": s3_ips, "cpu_s_per_image": s3_cpu,
               "requests": s3_stats["requests"], "retries": s3_stats["retries"],
               "bytes_read": s3_stats["bytes_read"],
               "moto_cores": cores(w_s3, "moto_cpu"), "proxy_cores": cores(w_s3, "proxy_cpu"),
               "loader_cores": cores(w_s3, "loader_cpu")},
        "s3_stub": {"impl": args.stub, "epochs": stub_rows, "images_per_s": stub_ips,
                    "cpu_s_per_image": stub_cpu,
                    "server_cores": cores(w_stub, "moto_cpu"),
                    "loader_cores": cores(w_stub, "loader_cpu"),
                    "first_batch_s": stub_first, "first_batch_listing_s": stub_first_list,
                    "first_batch_trials": stub_firsts},
        "boto3_dataloader_stub": {"images": stub_peer_n, "wall_s": stub_peer_wall,
                                  "images_per_s": stub_peer_ips,
                                  "server_cores": cores(w_stub_peer, "moto_cpu")},
        "boto3_dataloader": {"images": peer_n, "wall_s": peer_wall, "images_per_s": peer_ips,
                             "moto_cores": cores(w_peer, "moto_cpu"),
                             "proxy_cores": cores(w_peer, "proxy_cpu")},
        "first_batch_s": first_total, "first_batch_listing_s": first_list,
        "first_batch_trials": firsts, "loadavg_after": load1,
        "local_cores": cores(w_local, "loader_cpu"),
    })

    ratio_local = s3_ips / local_ips
    ratio_peer = s3_ips / peer_ips
    print(f"\n### stoker from S3 (+{args.latency_ms:g} ms per request) vs local disk vs boto3 DataLoader\n")
    print(f"{args.n_images} JPEGs (demo ImageFolder), imagenet_train(224, normalize=True), "
          f"batch {args.batch_size}, stoker threads={args.threads}, DataLoader "
          f"num_workers={args.peer_workers}; {os.cpu_count()} CPUs, load average "
          f"{load0[0]:.2f} before / {load1[0]:.2f} after.\n")
    print("| run | images/s | vs local | loader CPU (cores) | moto CPU (cores) | proxy or stub CPU (cores) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| stoker, local disk | {local_ips:.0f} | 1.00x | "
          f"{cores(w_local, 'loader_cpu'):.2f} | - | - |")
    print(f"| stoker, S3: moto behind the proxy | {s3_ips:.0f} | {ratio_local:.2f}x | "
          f"{cores(w_s3, 'loader_cpu'):.2f} | {cores(w_s3, 'moto_cpu'):.2f} | "
          f"{cores(w_s3, 'proxy_cpu'):.2f} |")
    print(f"| DataLoader + boto3 get_object ({args.peer_workers} workers), moto behind the proxy | "
          f"{peer_ips:.1f} | {peer_ips / local_ips:.2f}x | (workers) | "
          f"{cores(w_peer, 'moto_cpu'):.2f} | {cores(w_peer, 'proxy_cpu'):.2f} |")
    print(f"| stoker, S3: in-memory stub ({args.stub}) | {stub_ips:.0f} | "
          f"{stub_ips / local_ips:.2f}x | {cores(w_stub, 'loader_cpu'):.2f} | - | "
          f"{cores(w_stub, 'moto_cpu'):.2f} |")
    print(f"| DataLoader + boto3 get_object ({args.peer_workers} workers), stub ({args.stub}) | "
          f"{stub_peer_ips:.1f} | {stub_peer_ips / local_ips:.2f}x | (workers) | - | "
          f"{cores(w_stub_peer, 'moto_cpu'):.2f} |")
    print()
    print("| check | measured | target | |")
    print("|---|---:|---:|---|")
    print(f"| S3 (moto) / local | {ratio_local:.2f}x | >= 0.9x | {'ok' if ratio_local >= 0.9 else 'MISSED'} |")
    print(f"| S3 (moto) / boto3 DataLoader | {ratio_peer:.1f}x | >= 15x | {'ok' if ratio_peer >= 15 else 'MISSED'} |")
    print(f"| S3 stub / local | {stub_ips / local_ips:.2f}x | >= 0.9x | "
          f"{'ok' if stub_ips / local_ips >= 0.9 else 'MISSED'} |")
    print(f"| S3 stub / boto3 DataLoader on the stub | {stub_ips / stub_peer_ips:.1f}x | >= 15x | "
          f"{'ok' if stub_ips / stub_peer_ips >= 15 else 'MISSED'} |")
    print(f"| first batch, cold start (moto) | {first_total:.2f} s (listing {first_list:.2f} s) | < 2 s | "
          f"{'ok' if first_total < 2 else 'MISSED'} |")
    print(f"| first batch, cold start (stub) | {stub_first:.2f} s (listing {stub_first_list:.2f} s) "
          f"| < 2 s | {'ok' if stub_first < 2 else 'MISSED'} |")
    print(f"\nS3 epochs: {s3_stats['requests']} requests, {s3_stats['retries']} retries, "
          f"{s3_stats['bytes_read'] / 1e6:.0f} MB. Loader CPU per image: local "
          f"{local_cpu * 1e3:.2f} ms, S3 (moto) {s3_cpu * 1e3:.2f} ms, S3 (stub) "
          f"{stub_cpu * 1e3:.2f} ms. moto's CPU per GET: "
          f"{w_s3.moto_cpu / max(1, args.n_images * args.epochs) * 1e3:.1f} ms; the "
          f"{args.stub} stub's: {w_stub.moto_cpu / max(1, args.n_images * args.epochs) * 1e3:.2f} ms.")
    if args.json:
        print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
