"""Storage faults through the fault proxy in front of moto: error replies,
resets, stalled and slow replies, and a server that goes away.

What a user may rely on (README, "Storage faults"):
- transient faults (5xx, resets, stalls caught by read_timeout) are retried:
  the epoch delivers every sample exactly once, the retries and timeouts are
  counted in stats();
- a reply that is slow but keeps coming is not cut;
- a server that goes away fails the epoch with a "storage unavailable" error
  naming the endpoint, bucket, key, reason and attempts, raised from next()
  within io_timeout (whatever on_error says), or from Loader() when it is gone
  at the start; never a hang;
- an outage shorter than io_timeout is ridden out.
"""

from __future__ import annotations

import threading
import time

import pytest

import stoker
from conftest import BIG_COUNT, BUCKET
from s3_servers import proxy_control, proxy_stats, start_proxy


def indices_of_epoch(loader):
    seen = []
    for batch in loader:
        seen += batch["index"].tolist()
    return seen


def small_epoch_through_proxy(moto, read_timeout, **proxy_options):
    """One epoch of the 25-image bucket through a fault proxy, raising on
    any bad sample. Returns (indices seen, loader stats, proxy stats). No
    lookahead: the counts are this epoch's (the next epoch's reads, read
    ahead, would reach the proxy and the stats at any moment)."""
    with start_proxy(moto.port, **proxy_options) as proxy:
        loader = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=proxy.endpoint, batch_size=25,
                               transform=stoker.transforms.imagenet_val(16),
                               read_timeout=read_timeout, on_error="raise", lookahead=False)
        seen = indices_of_epoch(loader)
        return seen, loader.stats(), proxy_stats(proxy)


def test_503_resets_and_10s_stalls_every_sample_once(moto, big_prefix, record_behaviour):
    """The issue's mix: 10% 503 SlowDown, 5% connection resets, 1% replies
    stalled for 10 s. The default read_timeout (5 s) cuts the stalls, the
    retries get every sample, exactly once."""
    rates = {"503": 0.10, "reset": 0.05, "stall": 0.01}
    with start_proxy(moto.port, latency_ms=1, fault_rates=rates, stall_s=10, seed=21) as proxy:
        # A deep prefetch lets the stalls overlap instead of holding up one
        # batch after another.
        loader = stoker.Loader(big_prefix, endpoint_url=proxy.endpoint, batch_size=128,
                               prefetch_batches=8, shuffle=True, seed=3,
                               transform=stoker.transforms.imagenet_val(16), threads=2,
                               on_error="raise", lookahead=False)  # counts: this epoch's
        seen = indices_of_epoch(loader)
        s = loader.stats()
        faults = proxy_stats(proxy)
    assert len(seen) == BIG_COUNT and sorted(seen) == list(range(BIG_COUNT))
    assert s["samples_skipped"] == 0 and s["samples_delivered"] == BIG_COUNT
    assert faults["fault_503"] > 50 and faults["fault_reset"] > 20 and faults["fault_stall"] >= 3, faults
    # Every stalled reply was cut by the read timeout (none waited out: that
    # would not count as a timeout), and each was retried.
    assert s["timeouts"] >= faults["fault_stall"], (s, faults)
    # Each 503 and each stall cost one retry; a reset may also be retried
    # inside curl (a stale keep-alive connection to it), unseen by stoker.
    injected = faults["fault_503"] + faults["fault_reset"] + faults["fault_stall"]
    assert faults["fault_503"] + faults["fault_stall"] <= s["retries"] <= injected + s["timeouts"], (s, faults)
    record_behaviour("storage fault", "10% 503 + 5% resets + 1% stalled 10 s (default timeouts)",
                     "epoch complete, every sample once; each 503 and stall retried and "
                     "counted in stats()['retries'], each stall in stats()['timeouts']")


def test_stalls_before_and_inside_the_reply_are_cut_by_read_timeout(moto, small_folder,
                                                                   record_behaviour):
    """Stalls before the first byte and in the middle of a body, shorter
    ones (3 s) against read_timeout=0.5: each is aborted and retried."""
    seen, s, faults = small_epoch_through_proxy(
        moto, read_timeout=0.5, fault_rates={"stall": 0.15, "stall_body": 0.15}, stall_s=3, seed=4)
    assert sorted(seen) == list(range(25))
    stalls = faults["fault_stall"] + faults["fault_stall_body"]
    assert faults["fault_stall"] >= 1 and faults["fault_stall_body"] >= 1, faults
    # Every stall was cut (one waited out would end without a timeout). A
    # reply slowed by a busy machine may add a timeout of its own.
    assert s["timeouts"] >= stalls and s["retries"] >= stalls, (s, faults)
    record_behaviour("storage fault", "30% of replies stalled 3 s, before the first byte or mid-body "
                     "(read_timeout=0.5)", "epoch complete; every stall cut by the read timeout and retried")


def test_slow_but_steady_replies_are_not_cut(moto, small_folder, record_behaviour):
    """Every reply takes 4 s, in ten pieces 0.4 s apart: far longer than
    read_timeout=1.5 in all, but never silent that long (the margin is for
    moto's own time before the first piece). No timeouts."""
    seen, s, faults = small_epoch_through_proxy(
        moto, read_timeout=1.5, fault_rates={"slow": 1.0}, slow_s=4, seed=1)
    assert sorted(seen) == list(range(25))
    assert faults["fault_slow"] == 26, faults  # the listing and the 25 GETs
    assert s["timeouts"] == 0 and s["retries"] == 0, s
    record_behaviour("storage fault", "every reply slow (4 s) but steady, read_timeout=1.5",
                     "epoch complete, no timeouts, no retries")


def _consume_until_error(loader, after_batches, on_gone):
    """Iterates; after `after_batches` batches calls on_gone(). Returns (the
    exception, indices seen)."""
    seen, gone = [], False
    it = iter(loader)
    for _ in range(10_000):  # bounded; each next() itself must return or raise
        try:
            batch = next(it)
        except stoker.Error as e:
            assert gone, f"failed before the server went: {e}"
            return e, seen
        except StopIteration:
            pytest.fail(f"epoch ended without an error after {len(seen)} samples")
        seen += batch["index"].tolist()
        if not gone and len(seen) >= after_batches * batch["index"].shape[0]:
            on_gone()
            gone = True
    pytest.fail("no error after 10,000 batches")


@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_server_gone_mid_epoch_fails_within_io_timeout(moto, small_folder, mode, on_error,
                                                       record_behaviour):
    """The server goes away for good after a few batches: refused
    connections, or accepted ones that never get an answer. next() raises
    "storage unavailable" after retrying for io_timeout, also with
    on_error="skip": skipping every remaining sample is not what anyone
    wants."""
    io_timeout = 3.0
    with start_proxy(moto.port, latency_ms=1) as proxy:
        loader = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=proxy.endpoint, batch_size=2,
                               prefetch_batches=1, transform=stoker.transforms.imagenet_val(16),
                               threads=1, read_timeout=0.5, io_timeout=io_timeout,
                               on_error=on_error)
        err, seen = _consume_until_error(
            loader, 3, lambda: proxy_control(proxy, "gone", mode=mode))
        s = loader.stats()
        faults = proxy_stats(proxy)
    msg = str(err)
    assert msg.startswith("storage unavailable: s3://data/train/"), msg
    assert f"at {proxy.endpoint}" in msg and f"no answer from {proxy.endpoint}" in msg, msg
    assert "bucket 'data', key 'train/" in msg, msg
    assert f"(io_timeout {io_timeout:g} s)" in msg and "gave up after" in msg, msg
    reason = "connection failed: " if mode == "refuse" else "timeout: "
    assert reason in msg, msg
    # It gave up because io_timeout was spent (a cap on attempts would say
    # max_attempts), after retrying; the proxy saw the attempts.
    assert "max_attempts" not in msg, msg
    assert len(seen) >= 6 and len(set(seen)) == len(seen)
    assert s["retries"] >= 2, s
    if mode == "blackhole":
        assert s["timeouts"] >= 2 and faults["unanswered"] >= 2, (s, faults)
    record_behaviour("storage fault", f"server gone mid-epoch ({mode}), on_error={on_error}, "
                     f"io_timeout={io_timeout:g}",
                     "next() raised 'storage unavailable' once io_timeout was spent, after "
                     "retries, naming endpoint, bucket, key, reason and attempts")


def create_against_refusing_server(moto, **options):
    """Loader() against a proxy that refuses every connection, which must
    raise. Returns (the proxy's endpoint, the message)."""
    with start_proxy(moto.port) as proxy:
        proxy_control(proxy, "gone", mode="refuse")
        with pytest.raises(stoker.Error) as e:
            stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=proxy.endpoint, **options)
        return proxy.endpoint, str(e.value)


def test_server_gone_at_start_fails_loader_creation(moto, small_folder, record_behaviour):
    endpoint, msg = create_against_refusing_server(moto, io_timeout=2)
    assert msg.startswith("storage unavailable: cannot list: s3://data/train/"), msg
    assert "connection failed" in msg and "bucket 'data'" in msg, msg
    assert f"no answer from {endpoint}" in msg and "(io_timeout 2 s)" in msg, msg
    assert "max_attempts" not in msg, msg  # the reason is the spent io_timeout
    record_behaviour("storage fault", "server gone before the listing (io_timeout=2)",
                     "Loader() raised 'storage unavailable' once io_timeout was spent")


def test_aws_max_attempts_caps_the_retries(moto, small_folder, monkeypatch, record_behaviour):
    """AWS_MAX_ATTEMPTS, the AWS SDKs' setting, is honoured: 3 attempts and
    the listing fails without waiting for io_timeout."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    _, msg = create_against_refusing_server(moto, io_timeout=600)
    # The reason is the cap, not the (600 s) io_timeout.
    assert "gave up after 3 attempts" in msg and "(max_attempts 3)" in msg, msg
    assert "io_timeout" not in msg, msg
    # The Loader's own max_attempts wins over the variable.
    _, msg = create_against_refusing_server(moto, max_attempts=2)
    assert "gave up after 2 attempts" in msg, msg
    record_behaviour("storage fault", "server gone, AWS_MAX_ATTEMPTS=3",
                     "Loader() raised after 3 attempts")


def test_outage_shorter_than_io_timeout_is_ridden_out(moto, small_folder, record_behaviour):
    """The server goes away for 1.5 s and comes back: with io_timeout=30
    the requests are retried through the outage and the epoch completes."""
    with start_proxy(moto.port, latency_ms=1) as proxy:
        loader = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=proxy.endpoint, batch_size=2,
                               prefetch_batches=1, transform=stoker.transforms.imagenet_val(16),
                               threads=1, io_timeout=30, on_error="raise")
        back = threading.Timer(1.5, lambda: proxy_control(proxy, "back"))

        def gone():
            proxy_control(proxy, "gone", mode="refuse")
            back.start()

        seen, it = [], iter(loader)
        try:
            for batch in it:
                seen += batch["index"].tolist()
                if len(seen) == 6:
                    gone()
        finally:
            back.join()
        s = loader.stats()
    assert sorted(seen) == list(range(25))
    assert s["retries"] >= 1 and s["samples_skipped"] == 0, s
    record_behaviour("storage fault", "server gone for 1.5 s mid-epoch (io_timeout=30)",
                     "epoch complete, every sample once; the failed requests retried and counted")


def test_cli_fails_clearly_when_the_server_is_gone(moto, small_folder, record_behaviour):
    """`stoker ls` and `stoker bench` take --io-timeout and say why they stop."""
    import subprocess
    import sys

    with start_proxy(moto.port) as proxy:
        proxy_control(proxy, "gone", mode="refuse")
        for cmd in (["ls"], ["bench", "--json", "--epochs", "1"]):
            r = subprocess.run([sys.executable, "-m", "stoker.cli", *cmd, f"s3://{BUCKET}/train/",
                                "--endpoint-url", proxy.endpoint, "--io-timeout", "1"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
            assert f"stoker {cmd[0]}: storage unavailable: cannot list: s3://data/train/" in r.stderr
            assert "(io_timeout 1 s)" in r.stderr and r.stdout == "", r.stderr[-2000:]
    record_behaviour("storage fault", "stoker ls / bench --io-timeout 1, server gone",
                     "exit status 1, one line: storage unavailable, endpoint, attempts")


def _pass_threads():
    """The names of this process's stoker pipeline threads (a pass's fetch
    and decode threads; the storage's I/O thread is not one of them)."""
    import os

    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # it ended meanwhile
            pass
    return [n for n in names if n in ("stoker-fetch", "stoker-decode")]


def test_failure_while_the_consumer_is_away_is_raised_not_an_end_of_epoch(small_folder, tmp_path,
                                                                        record_behaviour):
    """The storage fails while the training loop is busy elsewhere (not in
    next()): the next call raises; the epoch does not just end short."""
    from s3_servers import free_port

    local = sorted(p for p in small_folder.rglob("*.jpg"))[0]
    manifest = tmp_path / "mixed.csv"
    manifest.write_text("path,label\n" + f"{local},0\n" +
                        "".join(f"s3://{BUCKET}/train/ant/{k:03d}.jpg,0\n" for k in range(1, 4)))
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    loader = stoker.Loader(manifest, endpoint_url=nobody, batch_size=1, prefetch_batches=4,
                           transform=stoker.transforms.imagenet_val(16), threads=1, io_timeout=1,
                           on_error="skip")
    it = iter(loader)
    first = next(it)  # the local sample; the S3 ones are being fetched
    assert first["index"].tolist() == [0]
    assert _pass_threads(), "the pass's threads are working"
    # They fail (io_timeout 1 s) while nobody waits in next(). The event: the
    # pass's threads end, which on this dataset only its failure makes them
    # do (its S3 samples can never arrive). The limit only catches a hang.
    deadline = time.monotonic() + 120
    while _pass_threads():
        assert time.monotonic() < deadline, "the pass never failed"
        time.sleep(0.001)
    with pytest.raises(stoker.Error) as e:
        next(it)
    assert str(e.value).startswith("storage unavailable: s3://data/train/ant/00"), str(e.value)
    assert f"no answer from {nobody}" in str(e.value)
    record_behaviour("storage fault", "server unreachable while the training loop is between batches",
                     "the next next() raises 'storage unavailable' (not a short epoch)")
