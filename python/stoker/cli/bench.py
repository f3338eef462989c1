"""`stoker bench URI`: how fast a dataset loads, what it costs, where time goes.

Runs the loader for a few epochs in this process and reports, per epoch and
overall: images/s (median over epochs), CPU seconds per image (all threads of
the process), peak RSS (sampled every 25 ms) and RSS after each epoch (it
should stay flat), the share of wall time the consumer waited for a batch
(stall_fraction), bytes read and requests, skipped samples, and the loader's
per-stage counters with their per-core rates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Union

import stoker
from stoker import _measure as measure

_DELTA_KEYS = ("samples_delivered", "samples_skipped", "batches_delivered", "bytes_read",
               "requests", "retries", "stall_s")


def parse_threads(s: str) -> Union[int, str]:
    """'auto' or a positive int."""
    return _auto_or_positive(s, "--threads")


def parse_prefetch(s: str) -> Union[int, str]:
    """'auto' or a positive int."""
    return _auto_or_positive(s, "--prefetch-batches")


def _auto_or_positive(s: str, flag: str) -> Union[int, str]:
    if s == "auto":
        return s
    try:
        n = int(s)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{flag} must be a positive integer or 'auto', got {s!r}")
    return n


def _batch_len(batch: Dict[str, Any]) -> int:
    return int(batch["label"].shape[0])


def stage_rows(stats: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The loader's stages, with items per busy CPU-second (the stage's rate
    on one core) and its share of all busy CPU time."""
    stages = [dict(s) for s in stats.get("stages", [])]
    busy = sum(s.get("busy_cpu_s", 0.0) for s in stages) or float("nan")
    for s in stages:
        b = s.get("busy_cpu_s", 0.0)
        s["items_per_cpu_s"] = s["items"] / b if b > 0 else None
        s["busy_share"] = b / busy if busy == busy else None
    return stages


def storage_kwargs(**options: Any) -> Dict[str, Any]:
    """The Loader keywords among `options` that were given (not None, and an
    endpoint_url that is not empty): the Loader's own defaults for the rest."""
    return {k: v for k, v in options.items()
            if v is not None and not (k == "endpoint_url" and not v)}


def run_bench(uri: str, *, batch_size: int = 64, threads: Union[int, str] = "auto",
              epochs: int = 3, transform: str = "train", normalize: bool = False,
              size: int = 224, seed: int = 0, shuffle: bool = True,
              prefetch_batches: Union[int, str] = "auto", cpu_budget: Optional[int] = None,
              memory_budget: Optional[str] = None,
              on_error: str = "skip", endpoint_url: Optional[str] = None,
              read_timeout: Optional[float] = None, io_timeout: Optional[float] = None,
              lookahead: bool = True, jpeg_index: bool = True, step_ms: float = 0.0,
              max_in_flight: Optional[int] = None,
              log: Optional[Callable[[str], None]] = None,
              ca_bundle: Optional[str] = None,
              min_rate: Optional[float] = None) -> Dict[str, Any]:
    """Loads `uri` for `epochs` epochs and returns the measurements (the
    object `stoker bench --json` prints)."""
    if epochs < 1:
        raise ValueError("--epochs must be >= 1")
    if step_ms < 0:
        raise ValueError("--step-ms must be >= 0")
    step_s = step_ms / 1e3
    make_tf = {"train": stoker.transforms.imagenet_train, "val": stoker.transforms.imagenet_val}
    if transform not in make_tf:
        raise ValueError(f"--transform must be train or val, got {transform!r}")
    tf = make_tf[transform](size, normalize=normalize)

    # What the process holds before loading anything (Python, NumPy, torch):
    # the part of the peak that is not the loader's.
    baseline_rss = measure.rss_bytes()
    t0 = time.perf_counter()
    extra = storage_kwargs(endpoint_url=endpoint_url, read_timeout=read_timeout,
                           io_timeout=io_timeout, max_in_flight=max_in_flight,
                           ca_bundle=ca_bundle, min_rate=min_rate)
    extra.update(lookahead=lookahead, jpeg_index=jpeg_index)
    loader = stoker.Loader(uri, batch_size=batch_size, transform=tf, shuffle=shuffle, seed=seed,
                           threads=threads, on_error=on_error, prefetch_batches=prefetch_batches,
                           **budget_kwargs(cpu_budget, memory_budget), **extra)
    open_s = time.perf_counter() - t0
    started = t0

    rows: List[Dict[str, Any]] = []
    first_batch_s: Optional[float] = None
    with measure.TreeSampler(pss=True) as sampler:
        last = loader.stats()
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            # CPU of the whole process, less what the RSS sampler itself used.
            cpu0, t0 = measure.tree_cpu_seconds() - sampler.cpu_s, time.perf_counter()
            n = 0
            for batch in loader:
                if first_batch_s is None:
                    # From the start of Loader(): a cold start's wait.
                    first_batch_s = time.perf_counter() - started
                n += _batch_len(batch)
                if step_s:
                    time.sleep(step_s)  # a simulated training step: no GIL, no CPU
            wall = time.perf_counter() - t0
            cpu = measure.tree_cpu_seconds() - sampler.cpu_s - cpu0
            now = loader.stats()
            d = {k: now.get(k, 0) - last.get(k, 0) for k in _DELTA_KEYS}
            last = now
            row = {
                "epoch": epoch, "images": n, "wall_s": wall,
                "images_per_s": n / wall if wall > 0 else float("nan"),
                "cpu_s": cpu, "cpu_s_per_image": cpu / n if n else float("nan"),
                "stall_s": d["stall_s"], "stall_fraction": d["stall_s"] / wall if wall > 0 else 0.0,
                "samples_skipped": d["samples_skipped"], "bytes_read": d["bytes_read"],
                "requests": d["requests"], "rss_after_bytes": measure.rss_bytes(),
            }
            rows.append(row)
            if log:
                log(f"epoch {epoch}: {n} images in {wall:.2f} s = {row['images_per_s']:,.0f} img/s, "
                    f"{row['cpu_s_per_image'] * 1e3:.2f} CPU-ms/img, stall "
                    f"{row['stall_fraction']:.1%}, RSS {measure.fmt_bytes(row['rss_after_bytes'])}")
    stats = loader.stats()
    loader.close()

    images = sum(r["images"] for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    cpu = sum(r["cpu_s"] for r in rows)
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "uri": os.fspath(uri),
        "num_samples": loader.num_samples,
        "num_classes": len(loader.classes),
        "batch_size": batch_size,
        "threads": threads,
        "transform": transform,
        "normalize": normalize,
        "size": size,
        "step_ms": step_ms,
        "images_per_s": measure.median(r["images_per_s"] for r in rows),
        # The best epoch: on a shared machine, the one least disturbed.
        "images_per_s_max": max(r["images_per_s"] for r in rows),
        "cpu_s_per_image": cpu / images if images else float("nan"),
        "peak_rss_bytes": max([sampler.peak_rss_bytes] + [r["rss_after_bytes"] for r in rows]),
        "peak_pss_bytes": sampler.peak_pss_bytes,
        "baseline_rss_bytes": baseline_rss,
        "stall_fraction": stats.get("stall_s", 0.0) / wall if wall > 0 else 0.0,
        "bytes_read": stats.get("bytes_read", 0),
        "requests": stats.get("requests", 0),
        "retries": stats.get("retries", 0),
        "timeouts": stats.get("timeouts", 0),
        "lookahead_reads": stats.get("lookahead_reads", 0),
        "lookahead_used": stats.get("lookahead_used", 0),
        "jpeg_index_jumps": stats.get("jpeg_index_jumps", 0),
        "jpeg_index_crops": stats.get("jpeg_index_crops", 0),
        "jpeg_index_bytes": stats.get("jpeg_index_bytes", 0),
        "errors_skipped": stats.get("samples_skipped", 0),
        "errors_by_kind": stats.get("errors_by_kind", {}),
        "images": images,
        "wall_s": wall,
        "cpu_s": cpu,
        "open_s": open_s,
        "first_batch_s": first_batch_s,
        "measure_cpu_s": sampler.cpu_s,
        "epochs": rows,
        "rss_after_epoch": [r["rss_after_bytes"] for r in rows],
        "stages": stage_rows(stats),
        "stoker": stoker.__version__,
        "torch": torch_version,
        "nproc": measure.usable_cpus(),
    }


def format_report(r: Dict[str, Any]) -> str:
    """The human-readable report of a run_bench result."""
    mb = measure.fmt_bytes
    tf = f"{r['transform']} {r['size']}{' normalize' if r['normalize'] else ''}"
    lines = [
        f"stoker bench {r['uri']}: {r['num_samples']:,} samples, {r['num_classes']} classes; "
        f"{tf}, batch {r['batch_size']}, threads {r['threads']} ({r['nproc']} cores)",
        "",
        f"{'epoch':>5} {'images':>8} {'wall s':>8} {'images/s':>9} {'CPU-ms/img':>11} "
        f"{'stall':>7} {'RSS after':>10}",
    ]
    for e in r["epochs"]:
        lines.append(f"{e['epoch']:>5} {e['images']:>8,} {e['wall_s']:>8.2f} {e['images_per_s']:>9,.0f} "
                     f"{e['cpu_s_per_image'] * 1e3:>11.2f} {e['stall_fraction']:>7.1%} "
                     f"{mb(e['rss_after_bytes']):>10}")
    lines += [
        "",
        f"median {r['images_per_s']:,.0f} images/s; {r['cpu_s_per_image'] * 1e3:.2f} CPU-ms per image; "
        f"peak RSS {mb(r['peak_rss_bytes'])} (PSS {mb(r['peak_pss_bytes'])}); "
        f"stall {r['stall_fraction']:.1%} of wall time",
        f"read {mb(r['bytes_read'])} in {r['requests']:,} requests ({r['retries']} retries, "
        f"{r.get('timeouts', 0)} timeouts); "
        f"{r['errors_skipped']} samples skipped"
        + (f" {r['errors_by_kind']}" if r["errors_by_kind"] else ""),
    ]
    if r.get("lookahead_reads"):
        lines.append(f"lookahead: {r['lookahead_reads']:,} reads of a next epoch's first batches "
                     f"issued while an epoch drained, {r['lookahead_used']:,} used")
    if r.get("jpeg_index_jumps"):
        lines.append(f"JPEG index: {r['jpeg_index_jumps']:,} decodes skipped MCUs outside the "
                     f"crop ({r['jpeg_index_crops']:,} cut to its MCU rows and columns, the rest "
                     f"started at a remembered row); index {mb(r['jpeg_index_bytes'])}")
    if r["stages"]:
        lines += ["", f"{'stage':<10} {'items':>9} {'MB':>9} {'busy CPU s':>11} {'wait in':>8} "
                      f"{'wait out':>8} {'items/CPU-s':>12} {'CPU share':>10}"]
        for s in r["stages"]:
            rate, share = s.get("items_per_cpu_s"), s.get("busy_share")
            rate_s = f"{rate:,.0f}" if rate else "-"
            share_s = f"{share:.0%}" if share is not None else "-"
            lines.append(
                f"{s.get('name', '?'):<10} {s.get('items', 0):>9,} {s.get('bytes', 0) / 1e6:>9.1f} "
                f"{s.get('busy_cpu_s', 0.0):>11.2f} {s.get('wait_input_s', 0.0):>8.2f} "
                f"{s.get('wait_output_s', 0.0):>8.2f} "
                f"{rate_s:>12} {share_s:>10}")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure loading a dataset: images/s, CPU, memory, stalls, stages",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, epochs=3)
    p.add_argument("--transform", choices=("train", "val"), default="train",
                   help="train: RandomResizedCrop + flip; val: resize + center crop")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=False,
                   help="float32 normalised with ImageNet mean/std (default: uint8)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false")
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip")

    p.add_argument("--endpoint-url", help="S3 endpoint (else AWS_ENDPOINT_URL_S3, "
                                          "AWS_ENDPOINT_URL or the AWS config profile)")
    p.add_argument("--lookahead", action=argparse.BooleanOptionalAction, default=True,
                   help="remote storage: read the next epoch's first batches while an epoch "
                        "drains (default: on)")
    p.add_argument("--jpeg-index", action=argparse.BooleanOptionalAction, default=True,
                   help="decode only the crop's MCU rows and columns of a JPEG, once "
                        "walked (default: on)")
    add_io_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_run)


def add_run_arguments(p, epochs: int) -> None:
    """What `stoker bench` and `stoker profile` both take: the dataset, batch
    size, threads, epochs, a simulated training step and the cap on
    requests in flight."""
    p.add_argument("uri", help="dataset: folder, file://, s3://bucket/prefix/, manifest .csv/.jsonl")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=parse_threads, default="auto", help="N or auto (default)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--step-ms", type=float, default=0.0, metavar="MS",
                   help="simulated training step: the consumer is busy MS per batch, so the "
                        "stall figure is training's (default 0: a consumer that does nothing)")
    p.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                   help="storage requests in flight at once (default: the prefetch window)")
    p.add_argument("--prefetch-batches", type=parse_prefetch, default="auto",
                   help="batches prepared ahead: N or auto (default: autotuned)")
    p.add_argument("--cpu-budget", type=int, default=None, metavar="CORES",
                   help="cores the autotuned decode threads may use (default: all)")
    p.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="bytes the loader's memory may grow by, e.g. 2GB, or none "
                        "(default: a quarter of the memory available)")


def budget_kwargs(cpu_budget: Optional[int], memory_budget: Optional[str]) -> Dict[str, Any]:
    """The Loader's cpu_budget and memory_budget from --cpu-budget and
    --memory-budget (unset: the Loader's defaults; "none": no memory budget)."""
    out: Dict[str, Any] = {}
    if cpu_budget is not None:
        out["cpu_budget"] = cpu_budget
    if memory_budget is not None:
        out["memory_budget"] = None if memory_budget == "none" else memory_budget
    return out


def add_io_arguments(p) -> None:
    """--read-timeout, --io-timeout, --min-rate and --ca-bundle: the Loader's
    read_timeout, io_timeout, min_rate and ca_bundle."""
    p.add_argument("--min-rate", type=float, default=None, metavar="BYTES_PER_S",
                   help="a reply slower than this over 15 s is retried (default 0: no minimum)")
    p.add_argument("--ca-bundle", default=None, metavar="PEM",
                   help="certificate authorities that https:// servers must be signed by "
                        "(default: AWS_CA_BUNDLE or the AWS profile's ca_bundle for s3://, "
                        "else the system's)")
    p.add_argument("--read-timeout", type=float, default=None, metavar="S",
                   help="seconds without a byte before a storage request is retried (default 5)")
    p.add_argument("--io-timeout", type=float, default=None, metavar="S",
                   help="seconds a storage request may take, retries included, before the "
                        "run fails (default 120)")


def _run(args) -> int:
    log = (lambda s: print(s, file=sys.stderr)) if args.json else None
    r = run_bench(args.uri, batch_size=args.batch_size, threads=args.threads, epochs=args.epochs,
                  transform=args.transform, normalize=args.normalize, size=args.size,
                  seed=args.seed, shuffle=args.shuffle, prefetch_batches=args.prefetch_batches,
                  cpu_budget=args.cpu_budget, memory_budget=args.memory_budget,
                  on_error=args.on_error, endpoint_url=args.endpoint_url,
                  read_timeout=args.read_timeout, io_timeout=args.io_timeout,
                  lookahead=args.lookahead, jpeg_index=args.jpeg_index,
                  step_ms=args.step_ms, max_in_flight=args.max_in_flight, log=log,
                  ca_bundle=args.ca_bundle, min_rate=args.min_rate)
    print(json.dumps(measure.jsonable(r)) if args.json else format_report(r))
    return 0
