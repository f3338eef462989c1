"""`stoker convert SRC DST`: write a dataset as shards that stoker reads faster.

SRC is any dataset stoker reads (a folder, a .csv/.jsonl manifest, a shard
dataset; local or s3://); DST a local folder or an s3:// prefix (shards are
uploaded as they are written, in parts). JPEGs are rewritten losslessly
(the same pixels) with a restart marker after every MCU, so a crop decodes
only its own rows and columns, from the first epoch, with no index in
memory; PNGs and fields are stored as they are (docs/shard-format.md). The
index is written last: an interrupted or failed conversion leaves nothing
that opens, and running the command again starts over.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import stoker
from stoker import _measure as measure


class _Bar:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0

    def __call__(self, p) -> None:
        now = time.monotonic()
        done, total = p["samples_done"], p["samples_total"]
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        frac = done / total if total else 1.0
        rate = done / p["seconds"] if p["seconds"] > 0 else 0.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r[{bar:<30}] {done:,}/{total:,} samples, {rate:,.0f}/s, "
                         f"{measure.fmt_bytes(p['bytes_out'])} out, {p['samples_skipped']} skipped ")
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def summary_line(dst: str, r) -> str:
    rate = r["samples_done"] / r["seconds"] if r["seconds"] > 0 else 0.0
    line = (f"{dst}: {r['samples_done'] - r['samples_skipped']:,} samples in {r['shards']} "
            f"shard{'s' if r['shards'] != 1 else ''}; {measure.fmt_bytes(r['bytes_in'])} in, "
            f"{measure.fmt_bytes(r['bytes_out'])} out; {r['seconds']:.1f} s ({rate:,.0f} samples/s); "
            f"{r['jpegs_indexed']:,} JPEGs with row tables")
    if r["jpegs_kept"]:
        line += f", {r['jpegs_kept']:,} kept as they were"
    if r["images_shrunk"]:
        line += f", {r['images_shrunk']:,} shrunk"
    if r["samples_skipped"]:
        line += f"; {r['samples_skipped']:,} skipped, e.g. " + "; ".join(r["skipped_examples"][:3])
    return line


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="write a dataset as shards (lossless, crop-aware)",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="dataset: folder, file://, s3://bucket/prefix/, manifest .csv/.jsonl")
    p.add_argument("dst", help="where the shards and index.stoker go: a local folder or "
                               "s3://bucket/prefix/")
    p.add_argument("--shard-size", default="256MB", help="bytes per shard (default 256MB)")
    p.add_argument("--shuffle-seed", type=int, default=None,
                   help="write samples in a random order of this seed (batch['index'] keeps "
                        "each sample's source position)")
    p.add_argument("--fields", default=None,
                   help="extra fields to carry, comma-separated (manifest columns, sibling files)")
    p.add_argument("--threads", default="auto", help="transcoding threads (default: one per core)")
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                   help="a bad sample is skipped and counted (default) or stops the conversion")
    p.add_argument("--optimize-huffman", action="store_true",
                   help="Huffman tables made for each JPEG: a few percent smaller, about twice "
                        "the CPU")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="lossy: shrink images whose longer side is over PX to PX and store them "
                        "as JPEGs (as FFCV's max_resolution)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of --max-size images")
    p.add_argument("--endpoint-url", help="S3 endpoint of an s3:// source or destination")
    p.add_argument("--part-size", default="16MB",
                   help="s3:// destination: bytes per uploaded part of a shard (default 16MB, "
                        "at least 5MB)")
    p.add_argument("--label-field", default="cls",
                   help="a WebDataset source: the extension of each sample's label file "
                        "(default cls)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    threads = args.threads if args.threads == "auto" else int(args.threads)
    fields = [f for f in args.fields.split(",") if f] if args.fields else None
    bar = _Bar(not args.quiet and sys.stderr.isatty())
    try:
        r = stoker.convert(args.src, args.dst, shard_size=args.shard_size,
                           shuffle_seed=args.shuffle_seed, fields=fields, threads=threads,
                           on_error=args.on_error, endpoint_url=args.endpoint_url,
                           optimize_huffman=args.optimize_huffman, max_size=args.max_size,
                           quality=args.quality, part_size=args.part_size, progress=bar,
                           label_field=args.label_field)
    finally:
        bar.end()
    print(json.dumps(r) if args.json else summary_line(args.dst, r))
    return 0
