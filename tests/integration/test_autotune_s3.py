"""Autotuning against storage latency (docs/autotune.md): S3 at 100 ms a
request, where the two batches ahead that the loader starts with hold too
few requests in flight to keep the decoders busy. With the defaults, the
loader raises the batches ahead by Little's law during the run; every epoch
still delivers each sample exactly once. Given explicitly, the setting
stays.
"""

from __future__ import annotations

import pytest

import stoker
from s3_servers import start_memory_s3, stub_binary

pytestmark = pytest.mark.skipif(stub_binary() is None,
                                reason="the C++ S3 stub is not built (make build)")

N = 600


@pytest.fixture(scope="module")
def slow_s3(tmp_path_factory):
    from stoker.datagen import make_imagefolder
    root = make_imagefolder(tmp_path_factory.mktemp("tune-s3") / "data", N, 3, seed=7,
                            min_side=48, max_side=80)
    with start_memory_s3(root, "tune", "train/", latency_ms=100, impl="cpp") as stub:
        yield stub


def _loader(stub, **kw):
    return stoker.Loader("s3://tune/train/", batch_size=16, shuffle=True,
                         transform=stoker.transforms.imagenet_val(32),
                         endpoint_url=stub.endpoint, **kw)


def _epoch(loader, e):
    loader.set_epoch(e)
    seen = []
    for b in loader:
        seen += [int(i) for i in b["index"]]
    return sorted(seen)


def test_batches_ahead_rise_with_latency(slow_s3, record_behaviour):
    loader = _loader(slow_s3)
    assert loader.stats()["autotune.prefetch_batches"] == 2
    e = 0
    # 2 batches of 16 in flight at 100 ms: 320 images/s, an epoch in about
    # 2 s; the tuner acts within a few seconds.
    while loader.stats()["autotune.prefetch_batches"] <= 2 and e < 10:
        assert _epoch(loader, e) == list(range(N))
        e += 1
    s = loader.stats()
    assert s["autotune.prefetch_batches"] > 2, s
    assert s["autotune.prefetch_batches"] <= s["autotune.max_prefetch_batches"]
    assert "waited for storage reads" in loader.profile()["autotune"]
    assert _epoch(loader, e) == list(range(N))
    loader.close()
    record_behaviour("autotune", "defaults, S3 at 100 ms a request",
                     "batches ahead rise from 2 by Little's law during the run; each epoch "
                     "delivers every sample once")


def test_given_prefetch_stays(slow_s3):
    loader = _loader(slow_s3, prefetch_batches=2)
    for e in range(3):
        assert _epoch(loader, e) == list(range(N))
    s = loader.stats()
    assert s["autotune.prefetch_batches"] == 2 and s["autotune.tuning_prefetch"] == 0
    loader.close()
