"""The C++ in-memory S3 stub (bench/s3_stub.cc) over https: the benchmark
that compares https with http serves both from it, so over https it must
serve exactly what it serves over http. stoker reads the same batches from it
over both schemes (and from the local folder); boto3, trusting only the test
CA, gets the exact bytes of GET, byte ranges, HEAD and ListObjectsV2; TLS 1.2
and 1.3 sessions resume (counted by the stub); a client that speaks no TLS
is one failed handshake, not a stopped server; a certificate or key that
cannot be loaded stops it at start with the file named.
"""

from __future__ import annotations

import socket
import ssl
import subprocess

import numpy as np
import pytest
import torch

import stoker
from s3_servers import s3_client, start_memory_s3, stub_binary, stub_stats
from test_s3 import check_stub_speaks_s3, run_epoch
from tls_certs import make_certs

pytestmark = pytest.mark.skipif(stub_binary() is None,
                                reason="the C++ S3 stub is not built (make build)")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("stub-certs"))


@pytest.fixture(scope="module")
def https_stub(certs, small_folder):
    with start_memory_s3(small_folder, "stub", "train/", latency_ms=1, impl="cpp",
                         tls=certs.good) as stub:
        yield stub


@pytest.fixture(scope="module")
def http_stub(small_folder):
    with start_memory_s3(small_folder, "stub", "train/", latency_ms=1, impl="cpp") as stub:
        yield stub


def delta(before, after):
    """What happened at the https stub between two stub_stats(), less the
    second call itself (one connection, one request, one full handshake)."""
    d = {k: after[k] - before[k] for k in before}
    for k in ("connections", "requests", "tls_full"):
        d[k] -= 1
    return d


def test_stoker_reads_the_same_batches_over_https_as_over_http(http_stub, https_stub, certs,
                                                              small_folder):
    # No lookahead: every request of a pass is done when its last batch
    # comes, so the stub's counts below are final.
    kw = dict(batch_size=8, shuffle=True, seed=5, threads=2, lookahead=False,
              transform=stoker.transforms.imagenet_train(40))
    before = stub_stats(https_stub, certs.ca)
    http = stoker.Loader("s3://stub/train/", endpoint_url=http_stub.endpoint, **kw)
    https = stoker.Loader("s3://stub/train/", endpoint_url=https_stub.endpoint,
                          ca_bundle=str(certs.ca), **kw)
    local = stoker.Loader(small_folder, **{k: v for k, v in kw.items() if k != "lookahead"})
    assert https.num_samples == http.num_samples == local.num_samples == 25
    for epoch in range(2):
        for loader in (http, https, local):
            loader.set_epoch(epoch)
        a, b, c = run_epoch(http), run_epoch(https), run_epoch(local)
        assert sorted(b[2].tolist()) == list(range(25))
        for x, y, z in zip(a, b, c):
            assert torch.equal(x, y) and torch.equal(y, z), epoch
    s = https.stats()
    assert s["bytes_read"] == sum(p.stat().st_size for p in small_folder.rglob("*")
                                  if p.is_file()) * 2
    d = delta(before, stub_stats(https_stub, certs.ca))
    # Every request came over a handshake that the stub counted, none failed.
    assert d["requests"] == s["requests"], (d, s)
    assert d["tls_failures"] == 0, d
    assert d["connections"] == d["tls_full"] + d["tls_resumed"] >= 1, d


def test_boto3_gets_exact_bytes_over_https(https_stub, certs, small_folder):
    client = s3_client(https_stub.endpoint, verify=str(certs.ca))
    check_stub_speaks_s3(client, small_folder, ranges=True)


def test_boto3_without_the_ca_is_refused(https_stub):
    # The stub's certificate is the test CA's: the system store refuses it.
    from botocore.config import Config
    from botocore.exceptions import SSLError

    client = s3_client(https_stub.endpoint, config=Config(s3={"addressing_style": "path"},
                                                          retries={"max_attempts": 1}))
    with pytest.raises(SSLError):
        client.head_object(Bucket="stub", Key="train/ant/000.jpg")


def test_objects_larger_than_a_record_over_https(certs, tmp_path):
    # Replies span many TLS records (16 KiB each) and more than a socket
    # buffer: whole, ranged across record borders, and several at once.
    folder = tmp_path / "blobs"
    (folder / "train").mkdir(parents=True)
    data = np.random.default_rng(1).bytes((3 << 20) + 257)
    (folder / "train" / "blob.bin").write_bytes(data)
    (folder / "train" / "tiny.bin").write_bytes(b"")
    with start_memory_s3(folder, "stub", "", impl="cpp", tls=certs.good) as stub:
        client = s3_client(stub.endpoint, verify=str(certs.ca))
        assert client.get_object(Bucket="stub", Key="train/blob.bin")["Body"].read() == data
        r = client.get_object(Bucket="stub", Key="train/blob.bin", Range="bytes=16000-50000")
        assert r["Body"].read() == data[16000:50001]
        assert client.head_object(Bucket="stub", Key="train/blob.bin")["ContentLength"] == len(data)
        assert client.get_object(Bucket="stub", Key="train/tiny.bin")["Body"].read() == b""
        from concurrent.futures import ThreadPoolExecutor

        def get(i):
            return client.get_object(Bucket="stub", Key="train/blob.bin",
                                     Range=f"bytes={i * 1000}-")["Body"].read()

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(get, range(16)))
        assert all(g == data[i * 1000:] for i, g in enumerate(got))


def fetch_stats(stub, context, session=None):
    """GET /__stub__/stats on a new connection; returns (whether the TLS
    session was resumed, the session after the reply)."""
    host, port = "127.0.0.1", stub.port
    with socket.create_connection((host, port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=host, session=session) as s:
            s.sendall(b"GET /__stub__/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply
            return s.session_reused, s.session


@pytest.mark.parametrize("version,tickets", [("1.3", True), ("1.2", True), ("1.2", False)])
def test_sessions_resume(https_stub, certs, version, tickets):
    # TLS 1.3 and 1.2 from tickets, and 1.2 from the stub's session cache
    # (the client asks for no ticket).
    context = ssl.create_default_context(cafile=str(certs.ca))
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = context.maximum_version = v
    if not tickets:
        context.options |= ssl.OP_NO_TICKET
    before = stub_stats(https_stub, certs.ca)
    reused, session = fetch_stats(https_stub, context)
    assert not reused
    for _ in range(3):
        reused, session = fetch_stats(https_stub, context, session)
        assert reused
    d = delta(before, stub_stats(https_stub, certs.ca))
    assert (d["tls_full"], d["tls_resumed"], d["tls_failures"]) == (1, 3, 0), d


def test_plain_http_to_the_https_stub_is_one_failed_handshake(https_stub, certs):
    before = stub_stats(https_stub, certs.ca)
    with socket.create_connection(("127.0.0.1", https_stub.port), timeout=30) as s:
        s.sendall(b"GET /stub/train/ant/000.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert b"HTTP/1.1" not in reply  # a TLS alert at most, then the close
    d = delta(before, stub_stats(https_stub, certs.ca))
    assert (d["connections"], d["tls_failures"], d["requests"]) == (1, 1, 0), d


@pytest.mark.parametrize("bad", ["cert", "key", "mismatch"])
def test_unusable_certificate_or_key_stops_it_at_start(certs, tmp_path, bad):
    cert, key = certs.good
    if bad == "cert":
        cert = tmp_path / "missing.pem"
    elif bad == "key":
        key = tmp_path / "missing.key"
    else:
        key = certs.expired[1]  # another certificate's key
    (tmp_path / "d").mkdir()
    r = subprocess.run([str(stub_binary()), "--dir", str(tmp_path / "d"), "--tls-cert", str(cert),
                        "--tls-key", str(key)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    assert (f"--tls-cert {cert}" if bad == "cert" else f"--tls-key {key}") in r.stderr, r.stderr
    if bad == "mismatch":
        assert "mismatch" in r.stderr, r.stderr  # OpenSSL's reason
