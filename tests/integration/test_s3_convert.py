"""stoker.convert into s3:// on moto: the same objects and batches as a
conversion into a local folder; shards larger than part_size uploaded in
parts; a conversion that fails mid-way (a part refused by the fault proxy)
or is stopped leaves no index and no open upload, and runs again to the
end; a missing bucket fails at once, naming it; the command line too.

Run: .venv/bin/python -m pytest -q tests/integration/test_s3_convert.py
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import stoker
from conftest import BUCKET
from s3_servers import proxy_control, start_proxy

SHARD = 16 << 10  # several shards of small_folder's 25 images


def run_epoch(loader):
    images, labels, indices = [], [], []
    for batch in loader:
        images.append(batch["image"].clone())
        labels.append(batch["label"].clone())
        indices.append(batch["index"].clone())
    return torch.cat(images), torch.cat(labels), torch.cat(indices)


def same_batches(a, b, epochs=(0, 1)):
    """Both loaders give the same images, labels and batch["index"], in the
    same order, each sample once an epoch."""
    for epoch in epochs:
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        ai, al, ax = run_epoch(a)
        bi, bl, bx = run_epoch(b)
        assert sorted(bx.tolist()) == list(range(a.num_samples))
        assert torch.equal(ax, bx) and torch.equal(al, bl) and torch.equal(ai, bi)


def objects(s3, prefix):
    """{key relative to prefix: bytes} of everything under the prefix."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix):]] = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    return out


def open_uploads(s3, prefix):
    return s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    """Twelve 1024 x 1024 JPEGs of noise in two classes, about 11 MB: one
    shard of several 5 MB parts."""
    from PIL import Image

    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(11)
    for k in range(12):
        d = root / f"c{k % 2}"
        d.mkdir(exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(buf, "JPEG",
                                                                                   quality=90)
        (d / f"{k:03d}.jpg").write_bytes(buf.getvalue())
    assert sum(p.stat().st_size for p in root.rglob("*.jpg")) > 10 << 20
    return root


def test_convert_to_s3_matches_the_local_conversion(moto, s3, small_folder, tmp_path):
    local = tmp_path / "local"
    a = stoker.convert(small_folder, local, shard_size=SHARD, threads=2)
    seen = []
    b = stoker.convert(small_folder, f"s3://{BUCKET}/converted/", endpoint_url=moto.endpoint,
                       shard_size=SHARD, threads=2, progress=seen.append)
    assert b["samples_done"] == 25 and b["samples_skipped"] == 0 and b["shards"] == a["shards"] > 2
    assert b["bytes_out"] == a["bytes_out"]
    assert seen and seen[-1]["samples_done"] == 25
    # The same objects, byte for byte, and nothing else.
    assert objects(s3, "converted/") == {p.name: p.read_bytes() for p in local.iterdir()}
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_train(32), shuffle=True, seed=3,
              threads=2, on_error="raise")
    same_batches(stoker.Loader(local, **kw),
                 stoker.Loader(f"s3://{BUCKET}/converted/", endpoint_url=moto.endpoint, **kw))
    val = dict(batch_size=5, transform=stoker.transforms.imagenet_val(24), threads=2)
    same_batches(stoker.Loader(local, **val),
                 stoker.Loader(f"s3://{BUCKET}/converted/index.stoker",
                               endpoint_url=moto.endpoint, **val), epochs=(0,))


def test_shards_larger_than_part_size_are_uploaded_in_parts(moto, s3, big_folder, tmp_path):
    local = tmp_path / "local"
    stoker.convert(big_folder, local, shard_size="64MB", threads=2)
    size = (local / "shard-000000.stoker").stat().st_size
    parts = -(-size // (5 << 20))
    assert parts >= 3
    r = stoker.convert(big_folder, f"s3://{BUCKET}/parts", endpoint_url=moto.endpoint,
                       shard_size="64MB", part_size="5MB", threads=2)
    assert r["shards"] == 1 and r["samples_done"] == 12
    head = s3.head_object(Bucket=BUCKET, Key="parts/shard-000000.stoker")
    assert head["ContentLength"] == size
    assert head["ETag"].endswith(f'-{parts}"')  # a multipart object of that many parts
    assert head_index_is_one_put(s3, "parts/index.stoker")
    assert objects(s3, "parts/") == {p.name: p.read_bytes() for p in local.iterdir()}
    assert open_uploads(s3, "parts/") == []
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_val(64), threads=2,
              on_error="raise")
    same_batches(stoker.Loader(local, **kw),
                 stoker.Loader(f"s3://{BUCKET}/parts/", endpoint_url=moto.endpoint, **kw),
                 epochs=(0,))


def head_index_is_one_put(s3, key):
    """The object was written by one PutObject: its ETag is a plain MD5."""
    return "-" not in s3.head_object(Bucket=BUCKET, Key=key)["ETag"]


def test_a_conversion_failing_mid_way_leaves_no_index_and_runs_again(
        moto, s3, big_folder, tmp_path, record_behaviour):
    proxy = start_proxy(moto.port)
    try:
        dst = f"s3://{BUCKET}/midway/"
        kw = dict(endpoint_url=proxy.endpoint, shard_size="64MB", part_size="5MB", threads=2)
        stoker.convert(big_folder, dst, **kw)  # an earlier, complete conversion
        assert set(objects(s3, "midway/")) == {"index.stoker", "shard-000000.stoker"}
        proxy_control(proxy, "refuse", match="partNumber=2&", status=403, code="AccessDenied")
        with pytest.raises(stoker.Error) as e:
            stoker.convert(big_folder, dst, **kw)
        msg = str(e.value)
        assert f"{dst}shard-000000.stoker: HTTP 403 AccessDenied" in msg, msg
        assert "UploadPart 2" in msg, msg
        # What the earlier conversion left is gone, the index first; the
        # shard's upload was aborted; no index was written.
        assert objects(s3, "midway/") == {}
        assert open_uploads(s3, "midway/") == []
        record_behaviour("convert", "into s3://, a part refused mid-way (403 AccessDenied)",
                         "raises stoker.Error naming the shard, the UploadPart and AccessDenied; "
                         "the earlier conversion there is removed (its index first), the shard's "
                         "multipart upload aborted, no index written; run again, it completes")
        proxy_control(proxy, "allow")
        r = stoker.convert(big_folder, dst, **kw)
        assert r["samples_done"] == 12
        assert set(objects(s3, "midway/")) == {"index.stoker", "shard-000000.stoker"}
        assert stoker.Loader(dst, endpoint_url=moto.endpoint, batch_size=4).num_samples == 12
    finally:
        proxy.stop()


def test_a_stopped_conversion_aborts_its_upload(moto, s3, big_folder):
    def stop(p):
        raise KeyboardInterrupt

    dst = f"s3://{BUCKET}/stopped/"
    with pytest.raises(KeyboardInterrupt):
        stoker.convert(big_folder, dst, endpoint_url=moto.endpoint, shard_size="64MB",
                       part_size="5MB", threads=2, progress=stop)
    assert objects(s3, "stopped/") == {}
    assert open_uploads(s3, "stopped/") == []


def test_a_missing_bucket_fails_at_once(moto, small_folder, record_behaviour):
    with pytest.raises(stoker.Error, match=r"s3://no-such-bucket/x/index.stoker: HTTP 404 "
                                           r"NoSuchBucket"):
        stoker.convert(small_folder, "s3://no-such-bucket/x/", endpoint_url=moto.endpoint)
    record_behaviour("convert", "into s3:// of a bucket that does not exist",
                     "raises stoker.Error naming the index object and NoSuchBucket before any "
                     "sample is read")


def test_not_into_the_sources_own_prefix(moto, s3, small_folder):
    src = f"s3://{BUCKET}/own/"
    stoker.convert(small_folder, src, endpoint_url=moto.endpoint, shard_size=SHARD)
    before = objects(s3, "own/")
    with pytest.raises(stoker.Error, match="source's own prefix"):
        stoker.convert(src, f"s3://{BUCKET}/own", endpoint_url=moto.endpoint)
    assert objects(s3, "own/") == before


def test_cli_convert_to_s3(moto, s3, small_folder):
    dst = f"s3://{BUCKET}/cli/"
    out = subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(small_folder), dst,
                          "--endpoint-url", moto.endpoint, "--shard-size", "16KB", "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["samples_done"] == 25 and r["shards"] > 2
    assert set(objects(s3, "cli/")) == {"index.stoker"} | {
        f"shard-{k:06d}.stoker" for k in range(r["shards"])}
    out = subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(small_folder), dst,
                          "--endpoint-url", moto.endpoint, "--shard-size", "16KB"],
                         capture_output=True, text=True, check=True)
    assert f"{dst}: 25 samples in {r['shards']} shards" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(small_folder), dst,
                          "--endpoint-url", moto.endpoint, "--part-size", "1MB"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "5 MiB" in bad.stderr
