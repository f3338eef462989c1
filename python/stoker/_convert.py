"""stoker.convert: any dataset stoker reads -> a shard dataset (docs/shard-format.md)."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Optional, Union

from stoker import _core
from stoker._loader import _field_specs

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(size: Union[int, str]) -> int:
    """256MB, 1GiB, 4096 -> bytes (binary units: MB = 2**20)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {size!r} (write e.g. 256MB or 1GB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def convert(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *,
            shard_size: Union[int, str] = "256MB", shuffle_seed: Optional[int] = None,
            fields=None, threads: Union[int, str] = "auto", on_error: str = "skip",
            endpoint_url: Optional[str] = None, optimize_huffman: bool = False,
            max_pixels: int = 178956970, max_size: Optional[int] = None, quality: int = 90,
            part_size: Union[int, str] = "16MB",
            progress: Optional[Callable[[Dict[str, Any]], None]] = None,
            label_field: str = "cls") -> Dict[str, Any]:
    """Writes the dataset at `src` (folder, manifest, shards or WebDataset tars;
    local or s3://) as shards in `dst`, a local folder or an s3://bucket/prefix/ (with the
    same endpoint_url and credentials as an s3:// source), which
    stoker.Loader(dst) then reads.

    JPEGs are rewritten losslessly (the same pixels) with a restart marker
    after every MCU, so a crop decodes only its own rows and columns; PNGs
    and fields are stored as they are. Into S3 each shard is uploaded as it
    is written, in parts of `part_size` (5MB or more), never held whole.
    The index is written last (a rename, or one PUT), so an interrupted or
    failed conversion leaves nothing that opens (the shard being written is
    removed, its upload aborted); run it again to start over. Returns a summary dict (samples_total, samples_done,
    samples_skipped, jpegs_indexed, jpegs_kept, images_shrunk, bytes_in,
    bytes_out, shards, seconds, skipped_examples); `progress` gets the same
    dict as it goes.

    max_size (lossy, off by default): images whose longer side is over
    max_size pixels are resized to it (bilinear, antialiased) and stored as
    JPEGs of `quality`, as FFCV's max_resolution, for training at low
    resolution.

    label_field: a WebDataset source's label file extension (default "cls"),
    as for stoker.Loader.
    """
    if threads == "auto":
        threads = 0
    return _core.convert(os.fsencode(src), os.fsencode(dst), parse_size(shard_size),
                         None if shuffle_seed is None else int(shuffle_seed), int(threads),
                         on_error, endpoint_url or "", _field_specs(fields),
                         bool(optimize_huffman), int(max_pixels), int(max_size or 0),
                         int(quality), parse_size(part_size), progress,
                         label_field=str(label_field))
