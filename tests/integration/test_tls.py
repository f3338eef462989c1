"""https end to end, on loopback, with certificates made by the test
(tls_certs.py): S3 (moto behind the fault proxy speaking TLS) and plain
https:// and http:// samples listed in a manifest, the test CA given each of
the three ways (AWS_CA_BUNDLE, the AWS profile's ca_bundle, ca_bundle=), and
the certificate failures a misconfigured endpoint gives: an unknown CA, a
certificate for another host name, an expired one, a host name that does not
resolve. Those end Loader() or the first next() with one stoker.Error naming
the endpoint and the reason, whatever on_error says, and are not retried
(counted on the server: connections and handshakes, not time). A TLS failure
at an endpoint that answered before stays one sample's I/O error.
"""

from __future__ import annotations

import urllib.request

import pytest
import torch

import stoker
from conftest import BUCKET
from s3_servers import proxy_stats, start_proxy
from test_s3 import run_epoch
from tls_certs import make_certs

N_TRAIN = 25


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def https_moto(moto, certs, small_folder):
    """moto behind a TLS-terminating proxy with a certificate from the test CA."""
    with start_proxy(moto.port, tls=certs.good) as proxy:
        yield proxy


def start_stub(folder, tls=None):
    """The small folder served from memory at /data/train/... (no signing
    needed), over https when tls is given."""
    return start_proxy(0, serve_dir=folder, bucket=BUCKET, prefix="train/", tls=tls)


@pytest.fixture(scope="session")
def https_stub(certs, small_folder):
    with start_stub(small_folder, certs.good) as stub:
        yield stub


@pytest.fixture(scope="session")
def http_stub(small_folder):
    with start_stub(small_folder) as stub:
        yield stub




def local_files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_manifest(path, rows):
    path.write_text("path,label\n" + "".join(f"{u},{label}\n" for u, label in rows))
    return path


KW = dict(batch_size=8, transform=stoker.transforms.imagenet_val(48), threads=2)


@pytest.mark.parametrize("way", ["AWS_CA_BUNDLE", "profile ca_bundle", "ca_bundle="])
def test_s3_over_https_with_the_test_ca_each_way(https_moto, small_folder, certs, way, tmp_path,
                                                monkeypatch, record_behaviour):
    extra = {}
    if way == "AWS_CA_BUNDLE":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(certs.ca))
    elif way == "profile ca_bundle":
        config = tmp_path / "config"
        config.write_text(f"[default]\nca_bundle = {certs.ca}\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    else:
        extra["ca_bundle"] = str(certs.ca)
    before = proxy_stats(https_moto)
    local = stoker.Loader(small_folder, **KW)
    remote = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=https_moto.endpoint,
                           lookahead=False, **KW, **extra)
    assert remote.num_samples == local.num_samples == N_TRAIN
    li, ll, lx = run_epoch(local)
    ri, rl, rx = run_epoch(remote)
    assert torch.equal(lx, rx) and torch.equal(ll, rl) and torch.equal(li, ri)
    s = remote.stats()
    assert s["samples_delivered"] == N_TRAIN and s["samples_skipped"] == 0
    assert s["bytes_read"] == sum(p.stat().st_size for p in local_files(small_folder))
    after = proxy_stats(https_moto)
    # Every request went through the TLS proxy.
    assert after["forwarded"] - before["forwarded"] >= N_TRAIN + 1
    record_behaviour("TLS", f"s3:// over https, private CA given by {way}",
                     "every sample read, bytes equal to the local copy")


def test_s3_over_https_without_the_ca_fails_at_loader_creation(https_moto, record_behaviour):
    # The system store does not know the test CA: the listing in Loader()
    # fails at once, naming the endpoint and the reason, and is not retried.
    before = proxy_stats(https_moto)
    with pytest.raises(stoker.Error) as e:
        stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=https_moto.endpoint, **KW)
    assert str(e.value).startswith("storage unavailable:"), str(e.value)
    msg = str(e.value)
    assert https_moto.endpoint in msg and "unknown CA" in msg, msg
    assert "ca_bundle" in msg  # says how to fix it
    after = proxy_stats(https_moto)
    assert after["connections"] - before["connections"] == 1, (before, after)
    assert after["requests"] == before["requests"]  # no request got past the handshake
    record_behaviour("TLS", "s3:// over https, the server's CA not trusted",
                     "Loader() raises stoker.Error naming the endpoint and 'unknown CA'; one "
                     "connection, no retry")


def test_https_and_http_samples_in_a_manifest_with_a_redirect(http_stub, https_stub, small_folder,
                                                              certs, tmp_path, record_behaviour):
    # The same files, half over https, half over plain http, and every
    # fifth through a redirect; decoded exactly as the local files.
    files = local_files(small_folder)
    rows, local_rows = [], []
    for i, p in enumerate(files):
        rel = p.relative_to(small_folder).as_posix()
        base = https_stub.endpoint if i % 2 == 0 else http_stub.endpoint
        path = f"/{BUCKET}/train/{rel}"
        url = base + ("/__redirect__" + path if i % 5 == 0 else path)
        rows.append((url, i % 3))
        local_rows.append((p, i % 3))
    manifest = write_manifest(tmp_path / "urls.csv", rows)
    local_manifest = write_manifest(tmp_path / "local.csv", local_rows)
    before = proxy_stats(https_stub)
    remote = stoker.Loader(manifest, ca_bundle=certs.ca, on_error="raise", lookahead=False, **KW)
    local = stoker.Loader(local_manifest, **KW)
    assert remote.sample_uri(0) == rows[0][0]
    li, ll, lx = run_epoch(local)
    ri, rl, rx = run_epoch(remote)
    assert torch.equal(lx, rx) and torch.equal(ll, rl) and torch.equal(li, ri)
    # The samples' bytes, each read once, and the manifest's.
    assert remote.stats()["bytes_read"] == (sum(p.stat().st_size for p in files) +
                                            manifest.stat().st_size)
    after = proxy_stats(https_stub)
    redirected_https = sum(1 for i in range(len(files)) if i % 10 == 0)
    assert after["redirects"] - before["redirects"] == redirected_https
    record_behaviour("TLS", "manifest of https:// and http:// URLs, some redirected (302)",
                     "every sample read over its scheme, redirects followed; bytes equal to "
                     "the local files")


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_404_in_an_https_manifest(https_stub, small_folder, certs, tmp_path, on_error,
                                  record_behaviour):
    files = local_files(small_folder)[:6]
    rows = [(f"{https_stub.endpoint}/{BUCKET}/train/{p.relative_to(small_folder).as_posix()}", 0)
            for p in files]
    missing = f"{https_stub.endpoint}/{BUCKET}/train/no/such.jpg"
    rows.insert(3, (missing, 0))
    manifest = write_manifest(tmp_path / "urls.csv", rows)
    loader = stoker.Loader(manifest, batch_size=7, transform=stoker.transforms.imagenet_val(32),
                           threads=2, ca_bundle=certs.ca, on_error=on_error, lookahead=False)
    if on_error == "raise":
        with pytest.raises(stoker.Error) as e:
            run_epoch(loader)
        assert missing in str(e.value) and "HTTP 404" in str(e.value), str(e.value)
    else:
        images, _, idx = run_epoch(loader)
        assert sorted(idx.tolist()) == [0, 1, 2, 4, 5, 6]
        s = loader.stats()
        assert s["samples_skipped"] == 1 and s["samples_delivered"] == 6
        assert s["retries"] == 0  # a 404 is an answer, not retried
    record_behaviour("TLS", f"https:// sample answered 404, on_error={on_error}",
                     "raises naming the URL and HTTP 404" if on_error == "raise"
                     else "that sample skipped and counted, the others delivered, no retry")


BAD = {
    "unknown_ca": "unknown CA",
    "wrong_host": "wrong host name",
    "expired": "expired",
}


@pytest.mark.parametrize("on_error", ["skip", "raise"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_certificate_failure_is_one_clear_error(small_folder, certs, tmp_path, case, on_error,
                                                record_behaviour):
    files = local_files(small_folder)
    with start_stub(small_folder, getattr(certs, case)) as proxy:
        rows = [(f"{proxy.endpoint}/{BUCKET}/train/{p.relative_to(small_folder).as_posix()}", 0)
                for p in files]
        manifest = write_manifest(tmp_path / "urls.csv", rows)
        before = proxy_stats(proxy)
        loader = stoker.Loader(manifest, ca_bundle=certs.ca, on_error=on_error, **KW)
        with pytest.raises(stoker.Error) as e:
            next(iter(loader))
        msg = str(e.value)
        after = proxy_stats(proxy)
    assert proxy.endpoint in msg and BAD[case] in msg, msg
    assert "TLS failure" in msg
    # One attempt per sample at most: nothing retried, no storm.
    s = loader.stats()
    assert s["retries"] == 0, s
    connections = after["connections"] - before["connections"]
    assert 1 <= connections <= len(files), (before, after)
    assert after["requests"] == before["requests"]  # none got past TLS
    record_behaviour("TLS", f"https:// server with a certificate: {BAD[case]}, on_error={on_error}",
                     f"first next() raises stoker.Error naming the endpoint and '{BAD[case]}'; "
                     "no request retried")


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_unresolvable_host_is_one_clear_error(tmp_path, on_error, record_behaviour):
    rows = [(f"https://no-such-host.invalid/{i}.jpg", 0) for i in range(10)]
    manifest = write_manifest(tmp_path / "urls.csv", rows)
    loader = stoker.Loader(manifest, on_error=on_error, **KW)
    with pytest.raises(stoker.Error) as e:
        next(iter(loader))
    msg = str(e.value)
    assert "https://no-such-host.invalid" in msg and "does not resolve" in msg, msg
    assert loader.stats()["retries"] == 0
    record_behaviour("TLS", f"https:// host name that does not resolve, on_error={on_error}",
                     "first next() raises stoker.Error naming the endpoint; no retry")


def test_tls_failure_after_success_is_one_samples_error(small_folder, certs, tmp_path,
                                                        record_behaviour):
    # The endpoint answered before, then starts showing an expired
    # certificate: each sample fails on its own (an I/O error, skipped and
    # counted), as any other per-sample failure; the pass is not ended.
    files = local_files(small_folder)
    with start_stub(small_folder, certs.good) as proxy:
        rows = [(f"{proxy.endpoint}/{BUCKET}/train/{p.relative_to(small_folder).as_posix()}", 0)
                for p in files]
        manifest = write_manifest(tmp_path / "urls.csv", rows)
        loader = stoker.Loader(manifest, ca_bundle=certs.ca, on_error="skip", lookahead=False,
                               **KW)
        _, _, idx = run_epoch(loader)
        assert sorted(idx.tolist()) == list(range(len(files)))
        cert, key = certs.expired
        url = f"http://127.0.0.1:{proxy.control}/tls?cert={cert}&key={key}"
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30)
        batches = list(loader)
        s = loader.stats()
    assert batches == []
    assert s["samples_skipped"] == len(files), s
    record_behaviour("TLS", "https:// endpoint that answered, then shows an expired certificate",
                     "each sample an I/O error of its own (skipped and counted with "
                     "on_error='skip'); the pass goes on")


def test_verify_false_reads_and_warns_naming_the_endpoint(small_folder, certs, tmp_path, capfd,
                                                         record_behaviour):
    files = local_files(small_folder)[:5]
    with start_stub(small_folder, certs.unknown_ca) as proxy:
        rows = [(f"{proxy.endpoint}/{BUCKET}/train/{p.relative_to(small_folder).as_posix()}", 0)
                for p in files]
        manifest = write_manifest(tmp_path / "urls.csv", rows)
        loader = stoker.Loader(manifest, verify=False, on_error="raise", lookahead=False, **KW)
        _, _, idx = run_epoch(loader)
    assert sorted(idx.tolist()) == list(range(5))
    err = capfd.readouterr().err
    assert f"TLS certificate verification is OFF for {proxy.endpoint}" in err, err
    assert err.count("verification is OFF") == 1  # once per endpoint, not per request
    with pytest.raises(TypeError):
        stoker.Loader(manifest, verify="no")
    record_behaviour("TLS", "verify=False against a server of an unknown CA",
                     "samples read; one warning on stderr naming the endpoint")


def test_new_connections_resume_the_tls_session(small_folder, certs, tmp_path, record_behaviour):
    # Epoch 0 makes full handshakes (no session yet). Then the server resets
    # every connection (POST /reset): each connection of epoch 1 is new, and
    # resumes a session the loader kept (counted by the server): every one,
    # since the loader keeps each ticket the server sends (two per
    # handshake; a TLS 1.3 ticket serves one resumption) and opens at most
    # a few connections per host at once.
    files = local_files(small_folder)
    with start_stub(small_folder, certs.good) as proxy:
        rows = [(f"{proxy.endpoint}/{BUCKET}/train/{p.relative_to(small_folder).as_posix()}", 0)
                for p in files]
        manifest = write_manifest(tmp_path / "urls.csv", rows)
        loader = stoker.Loader(manifest, ca_bundle=certs.ca, on_error="raise", lookahead=False,
                               **KW)
        run_epoch(loader)
        url = f"http://127.0.0.1:{proxy.control}/reset"
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30)
        before = proxy_stats(proxy)
        _, _, idx = run_epoch(loader)
        after = proxy_stats(proxy)
    assert sorted(idx.tolist()) == list(range(len(files)))
    new = after["connections"] - before["connections"]
    resumed = after["tls_resumed"] - before["tls_resumed"]
    assert new >= 1 and resumed == new, (new, resumed)
    record_behaviour("TLS", "new https connections to a server the loader talked to",
                     "each resumes from a TLS ticket the loader kept (counted by the server)")


@pytest.mark.parametrize("transport,reuse", [("default", None), ("curl", "1"), ("curl", "0")])
def test_the_ca_bundle_is_loaded_once_per_loader(small_folder, certs, tmp_path, monkeypatch,
                                                 transport, reuse, record_behaviour):
    # The loader reads its CA file once and keeps the store: after the file
    # is gone, new connections (the server reset the old ones) still verify,
    # over stoker's own transport (the default for https) and over libcurl
    # (STOKER_HTTP_TRANSPORT=curl). With STOKER_CURL_TLS_REUSE=0 (libcurl's
    # defaults on Debian: the file is parsed again for every connection)
    # they cannot.
    if transport == "curl":
        monkeypatch.setenv("STOKER_HTTP_TRANSPORT", "curl")
        monkeypatch.setenv("STOKER_CURL_TLS_REUSE", reuse)
    ca = tmp_path / "ca-copy.pem"
    ca.write_bytes(certs.ca.read_bytes())
    files = local_files(small_folder)
    with start_stub(small_folder, certs.good) as proxy:
        rows = [(f"{proxy.endpoint}/{BUCKET}/train/{p.relative_to(small_folder).as_posix()}", 0)
                for p in files]
        manifest = write_manifest(tmp_path / "urls.csv", rows)
        loader = stoker.Loader(manifest, ca_bundle=ca, on_error="skip", lookahead=False, **KW)
        run_epoch(loader)
        ca.unlink()
        url = f"http://127.0.0.1:{proxy.control}/reset"
        urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30)
        before = proxy_stats(proxy)
        batches = list(loader)
        after = proxy_stats(proxy)
    assert after["connections"] > before["connections"], (before, after)
    delivered = sum(int(b["index"].shape[0]) for b in batches)
    if reuse != "0":
        assert delivered == len(files)
        if transport == "default":
            record_behaviour("TLS", "CA bundle removed after the first connections",
                             "later connections still verify: the store is loaded once per loader")
    else:
        assert delivered == 0 and loader.stats()["samples_skipped"] == len(files)


def test_cli_takes_ca_bundle(https_moto, certs, record_behaviour):
    """`stoker ls` and `stoker bench` read over https with --ca-bundle, and
    without it say which endpoint's certificate is not trusted."""
    import json
    import subprocess
    import sys

    base = [f"s3://{BUCKET}/train/", "--endpoint-url", https_moto.endpoint]
    for cmd in (["ls", "--json"], ["bench", "--json", "--epochs", "1", "--threads", "2"]):
        ok = subprocess.run([sys.executable, "-m", "stoker.cli", *cmd, *base,
                             "--ca-bundle", str(certs.ca)], capture_output=True, text=True,
                            timeout=300)
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert json.loads(ok.stdout)["num_samples"] == N_TRAIN
        bad = subprocess.run([sys.executable, "-m", "stoker.cli", *cmd, *base],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 1 and bad.stdout == "", bad.stderr[-2000:]
        assert (f"stoker {cmd[0]}: storage unavailable: cannot list: s3://{BUCKET}/train/: "
                f"TLS failure at {https_moto.endpoint}") in bad.stderr, bad.stderr[-2000:]
        assert "unknown CA" in bad.stderr
    record_behaviour("TLS", "stoker ls / bench over https, with and without --ca-bundle",
                     "reads with it; without, exit status 1 naming the endpoint and 'unknown CA'")
