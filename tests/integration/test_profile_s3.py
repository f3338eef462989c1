"""`stoker profile` against S3 stubs whose limit is known by construction:
100 ms per request with 4 requests in flight (latency-bound), and replies
sharing a 20 MB/s link (bandwidth-bound). Both must name fetch. The test
asserts the stage named, never a time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import _jpeg
from s3_servers import start_memory_s3

STOKER = [sys.executable, "-m", "stoker.cli"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """64 JPEGs of about 30-60 KB in two classes."""
    root = tmp_path_factory.mktemp("profile_s3")
    rng = np.random.default_rng(11)
    for i in range(64):
        d = root / f"c{i % 2}"
        d.mkdir(exist_ok=True)
        (d / f"{i:03d}.jpg").write_bytes(_jpeg(rng, 320, 240))
    return root


def profile(endpoint, *args):
    out = subprocess.run(STOKER + ["profile", "s3://bench/train/", "--endpoint-url", endpoint,
                                   "--transform", "val", "--size", "64", "--batch-size", "8",
                                   "--threads", "2", *map(str, args), "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def check(r):
    shares = {s["name"]: s["wait_share"] for s in r["stages"]}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert r["bottleneck"] == "fetch", (shares, r["summary"])
    assert r["images"] == 64
    return shares


def test_latency_bound_names_fetch(folder):
    with start_memory_s3(folder, "bench", "train/", latency_ms=100) as stub:
        r = profile(f"http://127.0.0.1:{stub.port}", "--max-in-flight", "4")
    check(r)
    assert r["max_in_flight"] == 4
    # Never more than 4 requests out at once; each took at least the 100 ms
    # the stub waits before answering.
    assert 0 < r["io"]["mean_in_flight"] <= 4
    assert r["io"]["latency_p50_ms"] >= 100
    assert "fetch" in r["summary"]


def test_bandwidth_bound_names_fetch(folder):
    # 20 MB/s shared by every reply: about 400 images/s of these, far below
    # what two decode threads do at 64 x 64.
    with start_memory_s3(folder, "bench", "train/", bandwidth_bps=20e6) as stub:
        r = profile(f"http://127.0.0.1:{stub.port}")
    check(r)
    assert r["io"]["bytes_per_request"] > 0
