"""`stoker profile URI`: where the loader's time goes, and what limits it.

Runs the loader for a few epochs in this process, optionally with a
simulated training step (the consumer busy for --step-ms per batch, without
the GIL, as a GPU step would be), and reports from the loader's metrics:

  per stage    rate per core (items per CPU-second), utilisation, and
               wait_share: the share of all waiting attributed to it (the
               consumer's waits for a batch go to the stage that batch still
               needed, walking upstream; the loader's waits for the consumer
               go to `consumer`); the shares sum to 1
  bottleneck   the stage with the largest share, and one sentence saying so
  what-if      images/s with one more decode thread, from the measured
               per-core rates; the step time at and above which the loader
               would not stall training
  I/O          request latency p50/p90/p99, requests in flight, bytes per
               request, retries
  cost         CPU-seconds and energy per image (RAPL where readable, else an
               estimate from CPU-seconds and a stated watts per core)

--trace FILE writes Chrome trace-event JSON (one track per thread, a span per
sample per stage) that Perfetto and chrome://tracing open.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Dict, Optional, Union

import stoker
from stoker.cli.bench import add_io_arguments, add_run_arguments, budget_kwargs, storage_kwargs


def run_profile(uri: str, *, batch_size: int = 64, threads: Union[int, str] = "auto",
                epochs: int = 1, step_ms: float = 0.0, max_in_flight: Optional[int] = None,
                trace: Optional[str] = None, transform: str = "train", size: int = 224,
                normalize: bool = False, seed: int = 0,
                prefetch_batches: Union[int, str] = "auto", cpu_budget: Optional[int] = None,
                memory_budget: Optional[str] = None,
                endpoint_url: Optional[str] = None, read_timeout: Optional[float] = None,
                io_timeout: Optional[float] = None, jpeg_index: bool = True,
                max_batches: Optional[int] = None, ca_bundle: Optional[str] = None,
                min_rate: Optional[float] = None,
                log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Loads `uri` and returns loader.profile() plus the run's settings (the
    object `stoker profile --json` prints)."""
    if epochs < 1:
        raise ValueError("--epochs must be >= 1")
    if step_ms < 0:
        raise ValueError("--step-ms must be >= 0")
    make_tf = {"train": stoker.transforms.imagenet_train, "val": stoker.transforms.imagenet_val}
    tf = make_tf[transform](size, normalize=normalize)
    extra = storage_kwargs(endpoint_url=endpoint_url, read_timeout=read_timeout,
                           io_timeout=io_timeout, max_in_flight=max_in_flight,
                           ca_bundle=ca_bundle, min_rate=min_rate)
    loader = stoker.Loader(uri, batch_size=batch_size, transform=tf, shuffle=True, seed=seed,
                           threads=threads, prefetch_batches=prefetch_batches,
                           jpeg_index=jpeg_index, trace=trace is not None,
                           **budget_kwargs(cpu_budget, memory_budget), **extra)
    step_s = step_ms / 1e3
    batches = 0
    try:
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            t0 = time.perf_counter()
            n = 0
            for batch in loader:
                n += int(batch["label"].shape[0])
                batches += 1
                if step_s:
                    time.sleep(step_s)  # the training step: no GIL, no CPU
                if max_batches is not None and batches >= max_batches:
                    break
            if log:
                wall = time.perf_counter() - t0
                log(f"epoch {epoch}: {n} images in {wall:.2f} s")
            if max_batches is not None and batches >= max_batches:
                break
        report = loader.profile()
        if trace is not None:
            loader.write_trace(trace)
    finally:
        loader.close()
    report.update({"uri": str(uri), "batch_size": batch_size, "threads": loader.threads,
                   "step_ms": step_ms, "epochs": epochs, "trace": trace,
                   "stoker": stoker.__version__})
    return report


def format_report(r: Dict[str, Any]) -> str:
    lines = [
        f"stoker profile {r['uri']}: {r['images']:,} images in {r['wall_s']:.2f} s = "
        f"{r['images_per_s']:,.0f} images/s; batch {r['batch_size']}, {r['decode_threads']} decode "
        f"threads, {r['cores']} cores, step {r['step_ms']:g} ms",
        "",
        f"{'stage':<9} {'items':>9} {'busy CPU s':>11} {'items/CPU-s':>12} {'util':>6} "
        f"{'wait share':>11}",
    ]
    for s in r["stages"]:
        rate = f"{s['rate_per_core']:,.0f}" if s["rate_per_core"] else "-"
        lines.append(f"{s['name']:<9} {s['items']:>9,} {s['busy_cpu_s']:>11.2f} {rate:>12} "
                     f"{s['utilisation']:>6.0%} {s['wait_share']:>11.1%}")
    io, w = r["io"], r["whatif"]
    lines += [
        "",
        f"bottleneck: {r['bottleneck']}. {r['summary']}",
        f"what-if: one more decode thread -> about {w['one_more_decode_thread_images_per_s']:,.0f} "
        f"images/s; training stops stalling at steps of {w['no_stall_step_ms']:.1f} ms per batch "
        f"or more",
        f"I/O: {io['requests']:,} requests, latency p50 {io['latency_p50_ms']:.2f} ms, p90 "
        f"{io['latency_p90_ms']:.2f} ms, p99 {io['latency_p99_ms']:.2f} ms; "
        f"{io['mean_in_flight']:.1f} in flight on average; "
        f"{io['bytes_per_request'] / 1e3:,.1f} KB per request; {io['retries']} retries",
        f"cost: {r['cpu_s_per_image'] * 1e3:.2f} CPU-ms per image; "
        f"{r['energy_j_per_image']:.3f} J per image ("
        + ("RAPL" if r["energy_source"] == "rapl"
           else f"estimate: CPU-seconds x {r['watts_per_core']:g} W per core")
        + ")",
    ]
    if r.get("autotune"):
        lines.append(f"settings: {r['autotune']}")
    if r.get("trace"):
        lines.append(f"trace: {r['trace']} (open in Perfetto or chrome://tracing)")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "profile", help="where the time goes: per-stage rates, the bottleneck, a what-if",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, epochs=1)
    p.add_argument("--max-batches", type=int, default=None, metavar="N",
                   help="stop after N batches")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome trace-event JSON file")
    p.add_argument("--transform", choices=("train", "val"), default="train")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jpeg-index", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--endpoint-url", help="S3 endpoint (else AWS_ENDPOINT_URL_S3, "
                                          "AWS_ENDPOINT_URL or the AWS config profile)")
    add_io_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_run)


def _run(args) -> int:
    log = (lambda s: print(s, file=sys.stderr)) if args.json else None
    r = run_profile(args.uri, batch_size=args.batch_size, threads=args.threads,
                    epochs=args.epochs, step_ms=args.step_ms, max_in_flight=args.max_in_flight,
                    trace=args.trace, transform=args.transform, size=args.size, seed=args.seed,
                    prefetch_batches=args.prefetch_batches, cpu_budget=args.cpu_budget,
                    memory_budget=args.memory_budget, endpoint_url=args.endpoint_url,
                    read_timeout=args.read_timeout, io_timeout=args.io_timeout,
                    jpeg_index=args.jpeg_index, max_batches=args.max_batches,
                    ca_bundle=args.ca_bundle, min_rate=args.min_rate, log=log)
    print(json.dumps(r) if args.json else format_report(r))
    return 0
