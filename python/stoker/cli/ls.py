"""`stoker ls URI`: what a dataset holds - samples, classes with counts, bytes;
for a shard dataset its shards, fields and image formats too.

Everything comes from the loader's own listing (the same one training
reads), so what ls shows is what a Loader would iterate. Total bytes are
added for local datasets (one stat per sample; above 200,000 samples only
with --bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any, Dict, Optional

import stoker
from stoker import _measure as measure

_STAT_LIMIT = 200_000


def _local_path(uri: str) -> Optional[str]:
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None if "://" in uri else uri


def list_dataset(uri: str, with_bytes: Optional[bool] = None,
                 endpoint_url: Optional[str] = None, read_timeout: Optional[float] = None,
                 io_timeout: Optional[float] = None,
                 ca_bundle: Optional[str] = None,
                 min_rate: Optional[float] = None) -> Dict[str, Any]:
    """{uri, num_samples, num_classes, classes: [{label, name, count}],
    total_bytes (None when not computed)}. with_bytes: None = only when
    local and cheap, True = whenever local, False = never."""
    io = {k: v for k, v in (("read_timeout", read_timeout), ("io_timeout", io_timeout),
                            ("ca_bundle", ca_bundle), ("min_rate", min_rate)) if v is not None}
    loader = stoker.Loader(uri, batch_size=1, endpoint_url=endpoint_url, **io)
    try:
        n = loader.num_samples
        names = list(loader.classes)
        counts: Counter = Counter(loader.sample_label(i) for i in range(n))
        total = None
        shards = loader.shard_info
        if shards is not None:
            # The index says every size: nothing to stat. (A WebDataset
            # index is built in memory, not stored.)
            total = sum(s["bytes"] for s in shards["shards"])
            if shards.get("format") != "webdataset":
                total += shards["index_bytes"]
        elif with_bytes is not False and (with_bytes or n <= _STAT_LIMIT):
            paths = [_local_path(loader.sample_uri(i)) for i in range(n)]
            if all(p is not None for p in paths):
                try:
                    total = sum(os.stat(p).st_size for p in paths)
                except OSError:
                    total = None
    finally:
        loader.close()
    labels = sorted(set(range(len(names))) | set(counts))
    classes = [{"label": int(lb), "name": names[lb] if 0 <= lb < len(names) else None,
                "count": counts.get(lb)} for lb in labels]
    return {"uri": os.fspath(uri), "num_samples": n, "num_classes": len(classes),
            "classes": classes, "total_bytes": total, "shards": shards}


def format_listing(r: Dict[str, Any]) -> str:
    head = f"{r['uri']}: {r['num_samples']:,} samples, {r['num_classes']} classes"
    if r["total_bytes"] is not None:
        mean = r["total_bytes"] / r["num_samples"] if r["num_samples"] else 0
        head += f", {measure.fmt_bytes(r['total_bytes'])} (mean {measure.fmt_bytes(mean)})"
    width = max([len(str(c["name"])) for c in r["classes"]] + [5])
    lines = [head]
    sh = r.get("shards")
    if sh is not None:
        k = len(sh["shards"])
        if sh.get("format") == "webdataset":
            lines.append(f"  WebDataset: {k} tar{'s' if k != 1 else ''}, {sh['index']}, "
                         f"indexed in {measure.fmt_bytes(sh['index_bytes'])} of memory")
        else:
            lines.append(f"  shard dataset: {k} shard{'s' if k != 1 else ''}, index {sh['index']} "
                         f"({measure.fmt_bytes(sh['index_bytes'])})")
        lines.append("  images: " + ", ".join(f"{k} {v:,}" for k, v in
                                               sorted(sh["image_formats"].items())))
        if sh["fields"]:
            lines.append("  fields: " + ", ".join(f"{k} ({v})" for k, v in sh["fields"].items()))
        for s in sh["shards"]:
            lines.append(f"  {os.path.basename(s['uri'])}  {s['samples']:>9,} samples  "
                         f"{measure.fmt_bytes(s['bytes']):>10}")
    for c in r["classes"]:
        count = "?" if c["count"] is None else f"{c['count']:,}"
        lines.append(f"  {c['label']:>5}  {str(c['name'] or ''):<{width}}  {count:>9}")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ls", help="what a dataset holds: samples, classes, bytes",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri", help="dataset: folder, file://, s3://bucket/prefix/, manifest .csv/.jsonl, "
                               "WebDataset .tar or brace pattern")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bytes", dest="with_bytes", action="store_const", const=True, default=None,
                   help=f"sum file sizes even above {_STAT_LIMIT:,} samples")
    g.add_argument("--no-bytes", dest="with_bytes", action="store_const", const=False,
                   help="do not sum file sizes")
    p.add_argument("--endpoint-url", help="S3 endpoint (else AWS_ENDPOINT_URL_S3, "
                                          "AWS_ENDPOINT_URL or the AWS config profile)")
    from stoker.cli.bench import add_io_arguments

    add_io_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=_run)


def _run(args) -> int:
    r = list_dataset(args.uri, args.with_bytes, args.endpoint_url, args.read_timeout,
                     args.io_timeout, args.ca_bundle, args.min_rate)
    print(json.dumps(r) if args.json else format_listing(r), file=sys.stdout)
    return 0
