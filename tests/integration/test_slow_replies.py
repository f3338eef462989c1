"""Slow replies, on both transports (stoker's epoll one, and libcurl's via
STOKER_HTTP_TRANSPORT=curl): the fault proxy in front of moto sends replies
slowly but steadily, trickles them a byte at a time, or stalls them. What is
asserted is counted (the proxy's faults, the loader's timeouts and
retries), never a duration.

- a reply that keeps coming faster than min_rate completes, nothing retried;
- a reply that trickles in below min_rate (never silent for read_timeout) is
  cut as a timeout and retried;
- a stalled reply (silent for read_timeout) is cut and retried.
"""

from __future__ import annotations

import pytest

import stoker
from conftest import BUCKET
from s3_servers import proxy_stats, start_proxy

N = 25  # the small folder's samples; the listing is one more request
TRANSPORTS = ["epoll", "curl"]


def read_all(endpoint, **kw):
    loader = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=endpoint, batch_size=5,
                           transform=stoker.transforms.imagenet_val(32), threads=2,
                           on_error="raise", lookahead=False, **kw)
    idx = sorted(i for b in loader for i in b["index"].tolist())
    assert idx == list(range(N))
    return loader.stats()


@pytest.fixture(params=TRANSPORTS)
def transport(request, monkeypatch):
    if request.param == "curl":
        monkeypatch.setenv("STOKER_HTTP_TRANSPORT", "curl")
    else:
        monkeypatch.delenv("STOKER_HTTP_TRANSPORT", raising=False)
    return request.param


def test_slow_steady_replies_above_min_rate_complete(moto, small_folder, transport,
                                                     record_behaviour):
    # Each reply in ten pieces over 3 s: a few hundred bytes every 0.3 s,
    # well above min_rate=50 bytes/s.
    with start_proxy(moto.port, fault_rates={"slow": 1.0}, slow_s=3) as proxy:
        s = read_all(proxy.endpoint, min_rate=50, min_rate_window=1)
        faults = proxy_stats(proxy)
    assert faults["fault_slow"] == N + 1, faults
    assert s["timeouts"] == 0 and s["retries"] == 0, s
    record_behaviour("storage fault", f"every reply slow (3 s) but steady above min_rate ({transport})",
                     "every sample read, nothing cut or retried")


def test_trickle_below_min_rate_is_cut_and_retried(moto, small_folder, transport,
                                                   record_behaviour):
    # One byte every 50 ms (20 bytes/s, never silent for read_timeout) on
    # 30% of the replies: below min_rate=200 bytes/s over a 1 s window.
    with start_proxy(moto.port, fault_rates={"trickle": 0.3}, trickle_s=0.05, seed=3) as proxy:
        s = read_all(proxy.endpoint, read_timeout=5, min_rate=200, min_rate_window=1)
        faults = proxy_stats(proxy)
    assert faults["fault_trickle"] >= 1, faults
    # Every trickle was cut (one waited out would take minutes and count
    # no timeout) and retried.
    assert s["timeouts"] >= faults["fault_trickle"], (s, faults)
    assert s["retries"] >= faults["fault_trickle"], (s, faults)
    record_behaviour("storage fault", f"30% of replies trickled at 20 bytes/s, min_rate=200 ({transport})",
                     "each trickle cut as a timeout and retried; every sample read once")


def test_stalled_replies_are_cut_and_retried(moto, small_folder, transport, record_behaviour):
    with start_proxy(moto.port, fault_rates={"stall": 0.15, "stall_body": 0.15}, stall_s=3,
                     seed=4) as proxy:
        s = read_all(proxy.endpoint, read_timeout=0.5)
        faults = proxy_stats(proxy)
    stalls = faults["fault_stall"] + faults["fault_stall_body"]
    assert stalls >= 1, faults
    assert s["timeouts"] >= stalls and s["retries"] >= stalls, (s, faults)
    record_behaviour("storage fault", f"30% of replies stalled 3 s, read_timeout=0.5 ({transport})",
                     "every stall cut by the read timeout and retried")
