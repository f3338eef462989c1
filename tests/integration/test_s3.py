"""stoker against a real S3-compatible server (moto) on loopback: objects
uploaded with boto3, read by stoker.

Run: .venv/bin/python -m pytest -q tests/integration
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch

import stoker
from conftest import BIG_COUNT, BLOB_SIZE, BUCKET, _jpeg, blob_bytes
from s3_servers import (proxy_stats, s3_client, start_memory_s3, start_moto, start_proxy,
                        stub_binary)

REPO = Path(__file__).resolve().parents[2]


def run_epoch(loader):
    images, labels, indices = [], [], []
    for batch in loader:
        images.append(batch["image"].clone())
        labels.append(batch["label"].clone())
        indices.append(batch["index"].clone())
    return torch.cat(images), torch.cat(labels), torch.cat(indices)


def test_imagefolder_from_s3_matches_local(moto, small_folder):
    kw = dict(batch_size=8, transform=stoker.transforms.imagenet_val(48), threads=2)
    local = stoker.Loader(small_folder, **kw)
    # No lookahead: bytes_read below counts this epoch's reads only (the
    # next epoch's, read ahead, would land in it at any moment).
    remote = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=moto.endpoint, lookahead=False,
                           **kw)
    assert remote.num_samples == local.num_samples == 25
    assert remote.classes == local.classes == ["ant", "bee", "cow"]
    assert remote.sample_uri(0) == f"s3://{BUCKET}/train/ant/000.jpg"
    li, ll, lx = run_epoch(local)
    ri, rl, rx = run_epoch(remote)
    assert torch.equal(lx, rx) and torch.equal(ll, rl)
    assert torch.equal(li, ri)  # the same bytes, decoded the same way
    stats = remote.stats()
    total = sum(p.stat().st_size for p in small_folder.rglob("*") if p.is_file())
    assert stats["bytes_read"] == total
    assert stats["requests"] >= 25 + 1  # the GETs and at least one listing page
    assert stats["samples_delivered"] == 25 and stats["samples_skipped"] == 0


def test_lookahead_serves_the_next_epoch_and_nothing_else(moto, small_folder):
    # Once a pass has asked for all of its samples, the loader reads the
    # first prefetch_batches batches of epoch + 1; a pass over that epoch
    # from its start takes them. Every pass must yield exactly what local
    # files (never read ahead) yield: same samples, order, crops, pixels.
    kw = dict(batch_size=4, shuffle=True, seed=11, threads=2, prefetch_batches=2,
              transform=stoker.transforms.imagenet_train(32))
    local = stoker.Loader(small_folder, **kw)
    remote = stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=moto.endpoint, **kw)
    ahead = 2 * 4
    # (epoch to select, or None to let the finished pass advance it;
    #  lookahead reads the next pass should have taken)
    steps = [(0, 0), (1, ahead), (None, ahead), (7, 0), (7, 0)]
    used = 0
    for n, (epoch, taken) in enumerate(steps):
        for loader in (local, remote):
            if epoch is not None:
                loader.set_epoch(epoch)
        li, ll, lx = run_epoch(local)
        ri, rl, rx = run_epoch(remote)
        assert sorted(rx.tolist()) == list(range(25)), n
        assert torch.equal(lx, rx) and torch.equal(ll, rl), n
        assert torch.equal(li, ri), n
        s = remote.stats()
        used += taken
        assert s["lookahead_used"] == used, (n, s)
        # One lookahead per finished pass; the second pass over epoch 7
        # drops the one for epoch 8 and, once done, begins it again.
        assert s["lookahead_reads"] == ahead * (n + 1), (n, s)
        assert s["samples_delivered"] == 25 * (n + 1)
    assert remote.epoch == 7
    # A pass from a resumed position is not served from the lookahead.
    state = remote.state_dict()
    state.update(epoch=8, position=4)
    remote.load_state_dict(state)
    _, _, rx = run_epoch(remote)
    assert len(rx) == 21 and remote.stats()["lookahead_used"] == used
    remote.close()


def test_endpoint_from_environment(moto, small_folder, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    loader = stoker.Loader(f"s3://{BUCKET}/train", batch_size=25,
                           transform=stoker.transforms.imagenet_val(16))
    _, _, idx = run_epoch(loader)
    assert sorted(idx.tolist()) == list(range(25))


def test_listing_more_than_1000_keys(moto, big_prefix):
    loader = stoker.Loader(big_prefix, endpoint_url=moto.endpoint, batch_size=100, shuffle=True,
                           transform=stoker.transforms.imagenet_val(16), threads=2,
                           lookahead=False)  # requests below: this epoch's only
    assert loader.num_samples == BIG_COUNT
    assert loader.classes == ["c0", "c1"]
    seen = []
    for batch in loader:
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(BIG_COUNT))
    s = loader.stats()
    # Two listing pages (1,000 + 234 keys) and one GET per sample.
    assert s["requests"] == BIG_COUNT + 2, s
    assert s["retries"] == 0


def test_manifests_in_the_bucket_and_local_with_s3_paths(moto, s3, small_folder, tmp_path):
    # In the bucket, with paths relative to it and one absolute s3:// URI.
    csv = "path,label\nant/000.jpg,0\nbee/000.jpg,1\ns3://data/train/cow/002.jpg,2\n"
    s3.put_object(Bucket=BUCKET, Key="train/manifest.csv", Body=csv.encode())
    loader = stoker.Loader(f"s3://{BUCKET}/train/manifest.csv", endpoint_url=moto.endpoint,
                           batch_size=3, transform=stoker.transforms.imagenet_val(16))
    assert [loader.sample_uri(i) for i in range(3)] == [
        "s3://data/train/ant/000.jpg", "s3://data/train/bee/000.jpg",
        "s3://data/train/cow/002.jpg"]
    _, labels, _ = run_epoch(loader)
    assert labels.tolist() == [0, 1, 2]
    # A local manifest whose samples are in S3.
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": f"s3://data/train/ant/{k:03d}.jpg", "label": k})
                                + "\n" for k in range(4)))
    loader = stoker.Loader(manifest, endpoint_url=moto.endpoint, batch_size=4,
                           transform=stoker.transforms.imagenet_val(16))
    _, labels, _ = run_epoch(loader)
    assert labels.tolist() == [0, 1, 2, 3]
    # The local manifest, the 4 GETs, and the next epoch's 4 read ahead
    # (issued before the pass's last batch was handed out, so counted).
    s = loader.stats()
    assert s["lookahead_reads"] == 4 and s["lookahead_used"] == 0
    assert s["requests"] == 1 + 4 + 4, s


def test_missing_key_names_bucket_and_key(moto, s3, small_folder):
    csv = "path,label\nant/000.jpg,0\nant/missing.jpg,1\n"
    s3.put_object(Bucket=BUCKET, Key="train/with-missing.csv", Body=csv.encode())
    uri = f"s3://{BUCKET}/train/with-missing.csv"
    kw = dict(endpoint_url=moto.endpoint, batch_size=2, transform=stoker.transforms.imagenet_val(16))
    with pytest.raises(stoker.Error) as e:
        run_epoch(stoker.Loader(uri, on_error="raise", **kw))
    msg = str(e.value)
    assert "s3://data/train/ant/missing.jpg" in msg
    assert "bucket 'data'" in msg and "key 'train/ant/missing.jpg'" in msg
    assert "404" in msg and "NoSuchKey" in msg
    loader = stoker.Loader(uri, on_error="skip", **kw)
    _, _, idx = run_epoch(loader)
    assert idx.tolist() == [0]
    assert loader.stats()["samples_skipped"] == 1


def test_missing_bucket_and_empty_prefix(moto, s3):
    with pytest.raises(stoker.Error) as e:
        stoker.Loader("s3://no-such-bucket/x/", endpoint_url=moto.endpoint)
    assert "NoSuchBucket" in str(e.value) and "bucket 'no-such-bucket'" in str(e.value)
    with pytest.raises(stoker.Error) as e:
        stoker.Loader(f"s3://{BUCKET}/nothing-here/", endpoint_url=moto.endpoint)
    assert "s3://data/nothing-here/" in str(e.value)


@pytest.fixture(scope="module")
def secure_moto(tmp_path_factory):
    """A moto server that authenticates requests (verifying SigV4 with
    botocore) once the setup below is done, with an IAM user allowed s3:*."""
    setup_actions = 5  # create_user, create_access_key, put_user_policy, create_bucket, put_object
    with start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": str(setup_actions)}) as server:
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_user(UserName="loader")
        key = iam.create_access_key(UserName="loader")["AccessKey"]
        iam.put_user_policy(UserName="loader", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        s3 = s3_client(server.endpoint)
        s3.create_bucket(Bucket="secure")
        s3.put_object(Bucket="secure", Key="p/c/0.jpg", Body=_jpeg(np.random.default_rng(0), 32, 32))
        yield server, key["AccessKeyId"], key["SecretAccessKey"]


def test_right_credentials_pass_botocore_verification(secure_moto, monkeypatch):
    server, key_id, secret = secure_moto
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    loader = stoker.Loader("s3://secure/p/", endpoint_url=server.endpoint, batch_size=1,
                           transform=stoker.transforms.imagenet_val(16))
    _, _, idx = run_epoch(loader)
    assert idx.tolist() == [0]


def test_wrong_credentials(secure_moto, monkeypatch):
    server, key_id, secret = secure_moto
    wrong = "X" * 8 + secret[8:]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    with pytest.raises(stoker.Error) as e:
        stoker.Loader("s3://secure/p/", endpoint_url=server.endpoint)
    msg = str(e.value)
    assert msg.startswith("permission denied: "), msg
    assert "403 SignatureDoesNotMatch" in msg and "bucket 'secure'" in msg, msg
    assert "credentials: environment" in msg
    assert wrong not in msg and secret not in msg
    # A session token the server does not accept (S3 says 400 InvalidToken).
    monkeypatch.setenv("AWS_SESSION_TOKEN", "SESSIONTOKENVALUE123")
    with pytest.raises(stoker.Error) as e:
        stoker.Loader("s3://secure/p/", endpoint_url=server.endpoint)
    msg = str(e.value)
    assert msg.startswith("permission denied: ") and "bucket 'secure'" in msg, msg
    assert "SESSIONTOKENVALUE123" not in msg and wrong not in msg
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    # An access key the server does not know.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKEY000000000")
    with pytest.raises(stoker.Error) as e:
        stoker.Loader("s3://secure/p/", endpoint_url=server.endpoint)
    msg = str(e.value)
    assert "403 InvalidAccessKeyId" in msg and "bucket 'secure'" in msg, msg
    assert wrong not in msg


def test_faults_every_sample_exactly_once(moto, big_prefix):
    """10% of requests fail (503, 500, reset, truncated body): every sample
    still arrives exactly once, and the retries are counted."""
    with start_proxy(moto.port, latency_ms=2, fault_rate=0.10, seed=11) as proxy:
        loader = stoker.Loader(big_prefix, endpoint_url=proxy.endpoint, batch_size=64, shuffle=True,
                               seed=1, transform=stoker.transforms.imagenet_val(16), threads=2,
                               on_error="raise")
        assert loader.num_samples == BIG_COUNT
        seen = []
        for batch in loader:
            seen += batch["index"].tolist()
        assert len(seen) == BIG_COUNT
        assert sorted(seen) == list(range(BIG_COUNT))
        s = loader.stats()
        faults = proxy_stats(proxy)
    injected = sum(v for k, v in faults.items() if k.startswith("fault_"))
    assert injected > 50, faults
    assert all(faults[f"fault_{k}"] > 0 for k in ("503", "500", "reset", "truncate")), faults
    assert s["retries"] > 0 and s["samples_skipped"] == 0
    # Each error reply and cut-short body cost one retry. A reset before any
    # reply on a reused keep-alive connection may instead be retried inside
    # curl (it takes it for a stale connection), which stoker does not see.
    answered = faults["fault_503"] + faults["fault_500"] + faults["fault_truncate"]
    assert answered <= s["retries"] <= injected, (s, faults)


def _tests_binary():
    env = os.environ.get("STOKER_TESTS_BINARY")
    candidates = [Path(env)] if env else [REPO / "build" / "cpp" / "stoker_tests"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def test_cpp_s3_storage_against_moto(moto, big_prefix, blob):
    """S3Storage directly (ranges, HEAD, listing, concurrent reads): the
    S3Integration.* GoogleTest cases, pointed at this server."""
    binary = _tests_binary()
    if binary is None:
        pytest.skip("stoker_tests not built (make build, or set STOKER_TESTS_BINARY)")
    env = {**os.environ, "STOKER_S3_TEST_ENDPOINT": moto.endpoint,
           "STOKER_S3_TEST_BUCKET": BUCKET, "STOKER_S3_TEST_BIG_COUNT": str(BIG_COUNT),
           "STOKER_S3_TEST_BLOB_SIZE": str(BLOB_SIZE)}
    r = subprocess.run([str(binary), "--gtest_filter=S3Integration.*"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "SKIPPED" not in r.stdout, r.stdout[-2000:]
    assert "[  PASSED  ]" in r.stdout


def test_cpp_storage_conformance_against_moto(s3, moto):
    """The storage conformance suite's s3_moto cases (whole object, ranges,
    past the end, empty, missing, many in flight, coalesced ranges; writes in
    5 MiB parts, Put, Delete, aborted writers) against moto: the objects
    src/stoker/storage/testing/conformance_test.cc expects."""
    binary = _tests_binary()
    if binary is None:
        pytest.skip("stoker_tests not built (make build, or set STOKER_TESTS_BINARY)")
    s3.put_object(Bucket=BUCKET, Key="conformance/blob.bin", Body=blob_bytes(100003))
    s3.put_object(Bucket=BUCKET, Key="conformance/empty.bin", Body=b"")
    env = {**os.environ, "STOKER_S3_TEST_ENDPOINT": moto.endpoint, "STOKER_S3_TEST_BUCKET": BUCKET}
    r = subprocess.run([str(binary), "--gtest_filter=Backends/StorageConformance.*/s3_moto"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # Every case ran but the two moto cannot stage (a refused read, a read
    # that waits for ever: the loopback s3 cases cover those).
    assert "[  PASSED  ] 10 tests" in r.stdout, r.stdout[-3000:]
    assert "[  SKIPPED ] 2 tests" in r.stdout, r.stdout[-3000:]


def test_cpp_s3_storage_through_faults(moto, big_prefix, blob):
    """The same reads through the fault proxy (10% faults): retried to success."""
    binary = _tests_binary()
    if binary is None:
        pytest.skip("stoker_tests not built (make build, or set STOKER_TESTS_BINARY)")
    with start_proxy(moto.port, latency_ms=1, fault_rate=0.10, seed=5) as proxy:
        env = {**os.environ, "STOKER_S3_TEST_ENDPOINT": proxy.endpoint,
               "STOKER_S3_TEST_BUCKET": BUCKET, "STOKER_S3_TEST_BIG_COUNT": str(BIG_COUNT),
               "STOKER_S3_TEST_BLOB_SIZE": str(BLOB_SIZE)}
        r = subprocess.run(
            [str(binary), "--gtest_filter=S3Integration.WholeObjectHeadAndRanges:"
                          "S3Integration.ListsAndReadsManyConcurrently"],
            env=env, capture_output=True, text=True)
        faults = proxy_stats(proxy)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "[  PASSED  ] 2 tests" in r.stdout, r.stdout[-2000:]
    assert sum(v for k, v in faults.items() if k.startswith("fault_")) > 20, faults


STUB_IMPLS = ["python", pytest.param("cpp", marks=pytest.mark.skipif(
    stub_binary() is None, reason="the C++ S3 stub is not built (make build)"))]


@pytest.mark.parametrize("impl", STUB_IMPLS)
def test_memory_stub_serves_what_moto_serves(moto, small_folder, impl):
    """The benchmark's in-memory S3 stubs give stoker the same dataset."""
    kw = dict(batch_size=25, transform=stoker.transforms.imagenet_val(32))
    with start_memory_s3(small_folder, "stub", "train/", latency_ms=1, impl=impl) as stub:
        from_stub = run_epoch(stoker.Loader("s3://stub/train/", endpoint_url=stub.endpoint, **kw))
    from_moto = run_epoch(stoker.Loader(f"s3://{BUCKET}/train/", endpoint_url=moto.endpoint, **kw))
    assert len(from_stub) == len(from_moto) > 0
    for a, b in zip(from_stub, from_moto):
        assert torch.equal(a, b)


def check_stub_speaks_s3(client, folder, ranges):
    """boto3 `client` against a stub serving `folder` as s3://stub/train/:
    paginated ListObjectsV2, GET, HEAD, a missing key, and (`ranges`) byte
    ranges, with the files' exact bytes."""
    files = {f"train/{p.relative_to(folder).as_posix()}": p.read_bytes()
             for p in sorted(folder.rglob("*")) if p.is_file()}
    keys, pages = [], 0
    for page in client.get_paginator("list_objects_v2").paginate(
            Bucket="stub", Prefix="train/", PaginationConfig={"PageSize": 7}):
        pages += 1
        keys += [(o["Key"], o["Size"]) for o in page["Contents"]]
    assert pages == -(-len(files) // 7)
    assert keys == [(k, len(v)) for k, v in files.items()]
    assert [o["Key"] for o in client.list_objects_v2(Bucket="stub", Prefix="train/bee/")
            ["Contents"]] == [k for k in files if k.startswith("train/bee/")]
    for key, data in files.items():
        assert client.get_object(Bucket="stub", Key=key)["Body"].read() == data
    key, data = next(iter(files.items()))
    assert client.head_object(Bucket="stub", Key=key)["ContentLength"] == len(data)
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket="stub", Key="train/none.jpg")
    if ranges:
        r = client.get_object(Bucket="stub", Key=key, Range="bytes=10-99")
        assert r["Body"].read() == data[10:100]
        assert r["ContentRange"] == f"bytes 10-99/{len(data)}"
        assert client.get_object(Bucket="stub", Key=key, Range="bytes=-5")["Body"].read() \
            == data[-5:]


@pytest.mark.parametrize("impl", STUB_IMPLS)
def test_memory_stub_speaks_s3(small_folder, impl):
    """boto3 against the stubs: paginated ListObjectsV2, GET, HEAD, missing
    keys, and (the C++ stub) byte ranges, with the files' exact bytes."""
    with start_memory_s3(small_folder, "stub", "train/", latency_ms=0, impl=impl) as stub:
        check_stub_speaks_s3(s3_client(stub.endpoint), small_folder, ranges=impl == "cpp")


def test_fields_from_s3_match_local(moto, s3, tmp_path):
    """Sibling-file fields of an s3:// ImageFolder and a manifest's .npy
    paths in the bucket: the same values as the local copy, one GET per
    file asked for."""
    rng = np.random.default_rng(8)
    root = tmp_path / "withfields"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k in range(5):
            stem = root / cls / f"{k:03d}"
            stem.with_suffix(".jpg").write_bytes(_jpeg(rng, 40 + k, 36))
            stem.with_suffix(".txt").write_text(f"{cls} caption {k}")
            np.save(stem.with_suffix(".npy"), rng.normal(size=(2, 3)).astype(np.float32))
    for p in root.rglob("*"):
        if p.is_file():
            s3.put_object(Bucket=BUCKET, Key=f"withfields/{p.relative_to(root)}",
                          Body=p.read_bytes())
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_val(32), on_error="raise",
              fields=["txt", "npy"])
    local = stoker.Loader(root, **kw)
    remote = stoker.Loader(f"s3://{BUCKET}/withfields/", endpoint_url=moto.endpoint,
                           lookahead=False, **kw)
    assert remote.num_samples == local.num_samples == 10
    for lb, rb in zip(local, remote):
        assert torch.equal(lb["image"], rb["image"]) and lb["txt"] == rb["txt"]
        assert torch.equal(lb["npy"], rb["npy"]) and tuple(rb["npy"].shape[1:]) == (2, 3)
    assert remote.stats()["requests"] >= 3 * 10  # image, .txt and .npy of each sample
    manifest = "path,label,arr\n" + "".join(
        f"s3://{BUCKET}/withfields/a/{k:03d}.jpg,{k},s3://{BUCKET}/withfields/a/{k:03d}.npy\n"
        for k in range(5))
    s3.put_object(Bucket=BUCKET, Key="withfields/m.csv", Body=manifest.encode())
    m = stoker.Loader(f"s3://{BUCKET}/withfields/m.csv", endpoint_url=moto.endpoint,
                      batch_size=5, transform=stoker.transforms.imagenet_val(32),
                      on_error="raise", fields={"arr": "npy"})
    b = next(iter(m))
    want = np.stack([np.load(root / "a" / f"{k:03d}.npy") for k in range(5)])
    np.testing.assert_array_equal(b["arr"].numpy(), want)


def _upload(s3, root, prefix):
    for p in sorted(root.rglob("*")):
        if p.is_file():
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{p.relative_to(root)}", Body=p.read_bytes())


def test_shards_from_s3_a_page_per_request(moto, s3, small_folder, tmp_path):
    """A converted dataset in the bucket: the same batches as the local
    shards, in the chunk order one ranged GET per page (pages of about 4 KB
    here), with no listing when the index is named; a convert from s3://."""
    shards = tmp_path / "shards"
    r = stoker.convert(f"s3://{BUCKET}/train/", shards, endpoint_url=moto.endpoint,
                       shard_size=16 << 10)
    assert r["samples_done"] == 25 and r["samples_skipped"] == 0 and r["shards"] > 2
    _upload(s3, shards, "shards")
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_train(32), shuffle=True, seed=3,
              threads=2, on_error="raise")
    local = stoker.Loader(shards, **kw)
    remote = stoker.Loader(f"s3://{BUCKET}/shards/index.stoker", endpoint_url=moto.endpoint,
                           lookahead=False, **kw)
    assert remote.num_samples == 25 and remote.classes == ["ant", "bee", "cow"]
    for epoch in (0, 1):
        local.set_epoch(epoch)
        remote.set_epoch(epoch)
        li, ll, lx = run_epoch(local)
        before = remote.stats()
        ri, rl, rx = run_epoch(remote)
        after = remote.stats()
        assert sorted(rx.tolist()) == list(range(25))
        assert torch.equal(lx, rx) and torch.equal(ll, rl) and torch.equal(li, ri)
        pages = after["shard_pages_read"] - before["shard_pages_read"]
        assert pages == after["requests"] - before["requests"]  # one GET a page, nothing else
    # The pages: runs of records of one shard of at most page_bytes. With
    # 4 KB pages every page is read once per epoch (the chunk order's
    # promise), and the whole dataset's bytes once.
    small = stoker.Loader(f"s3://{BUCKET}/shards/", endpoint_url=moto.endpoint, lookahead=False,
                          page_bytes=4096, **kw)
    before = small.stats()
    run_epoch(small)
    after = small.stats()
    n_pages = after["shard_pages_read"] - before["shard_pages_read"]
    assert n_pages > r["shards"]
    shard_bytes = sum(p.stat().st_size for p in shards.glob("shard-*.stoker"))
    assert after["bytes_read"] - before["bytes_read"] == shard_bytes - 16 * r["shards"]


def test_shards_from_s3_small_windows_and_storage_order(moto, s3, small_folder, tmp_path):
    """Pages read ahead and let go under a small budget (window_pages=2:
    four pages held), in storage order (no shuffle, pages read ahead), and
    with the next epoch's first pages read ahead (lookahead): every sample
    exactly once, the local shards' pixels."""
    shards = tmp_path / "shards"
    stoker.convert(small_folder, shards, shard_size=16 << 10)
    _upload(s3, shards, "shards2")
    for kw in (dict(shuffle=True, seed=5, window_pages=2), dict(shuffle=False),
               dict(shuffle=True, seed=6, window_pages=3, lookahead=True)):
        kw.setdefault("lookahead", False)
        common = dict(batch_size=3, transform=stoker.transforms.imagenet_val(24), threads=2,
                      on_error="raise", page_bytes=3000)
        local = stoker.Loader(shards, **common, **{k: v for k, v in kw.items() if k != "lookahead"})
        remote = stoker.Loader(f"s3://{BUCKET}/shards2/", endpoint_url=moto.endpoint,
                               **common, **kw)
        for epoch in (0, 1, 2):
            local.set_epoch(epoch)
            remote.set_epoch(epoch)
            li, ll, lx = run_epoch(local)
            ri, rl, rx = run_epoch(remote)
            assert sorted(rx.tolist()) == list(range(25)), kw
            assert torch.equal(lx, rx) and torch.equal(li, ri), kw


def _webdataset_tars(root, n=17, per_tar=5):
    """WebDataset tars written by the webdataset package: jpg, cls, txt."""
    wds = pytest.importorskip("webdataset", reason="pip install webdataset (make venv does)")
    rng = np.random.default_rng(11)
    root.mkdir()
    rows = ["path,label"]
    src = root.parent / (root.name + "-src")
    src.mkdir()
    with wds.ShardWriter(str(root / "train-%04d.tar"), maxcount=per_tar) as sink:
        for i in range(n):
            data = _jpeg(rng, int(rng.integers(40, 120)), int(rng.integers(40, 120)))
            (src / f"{i:03d}.jpg").write_bytes(data)
            rows.append(f"{i:03d}.jpg,{i % 4}")
            sink.write({"__key__": f"k{i:03d}", "jpg": data, "cls": i % 4, "txt": f"t{i}"})
    (src / "manifest.csv").write_text("\n".join(rows) + "\n")
    return src / "manifest.csv"


def test_webdataset_tars_from_s3_and_http(moto, s3, tmp_path):
    """WebDataset tars in a bucket (a prefix of tars, and a brace pattern)
    and over plain http (the C++ stub, path-style URLs): the same batches as
    the images themselves, in the chunk order one ranged GET per page."""
    tars = tmp_path / "tars"
    manifest = _webdataset_tars(tars)
    _upload(s3, tars, "wds")
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_train(32), shuffle=True, seed=6,
              threads=2, on_error="raise", fields=["txt"])
    local = stoker.Loader(manifest, **{**kw, "fields": None}, order="sample")
    want = run_epoch(local)
    for uri in (f"s3://{BUCKET}/wds/", f"s3://{BUCKET}/wds/train-{{0000..0003}}.tar"):
        remote = stoker.Loader(uri, endpoint_url=moto.endpoint, order="sample", **kw)
        assert remote.num_samples == 17
        got = run_epoch(remote)
        for a, b in zip(want, got):
            assert torch.equal(a, b)
    chunk = stoker.Loader(f"s3://{BUCKET}/wds/", endpoint_url=moto.endpoint, lookahead=False,
                          page_bytes=4096, **kw)
    before = chunk.stats()
    _, _, idx = run_epoch(chunk)
    after = chunk.stats()
    assert sorted(idx.tolist()) == list(range(17))
    pages = after["shard_pages_read"] - before["shard_pages_read"]
    assert pages > 4 and pages == after["requests"] - before["requests"]
    if stub_binary() is not None:
        with start_memory_s3(tars, "stub", "wds/", impl="cpp") as stub:
            http = stoker.Loader(f"{stub.endpoint}/stub/wds/train-{{0000..0003}}.tar",
                                 order="sample", **kw)
            got = run_epoch(http)
        for a, b in zip(want, got):
            assert torch.equal(a, b)


def test_cached_shards_from_s3_fetch_each_page_at_most_once(moto, s3, small_folder, tmp_path):
    """Shards in the bucket read in the chunk-aware order (small windows: the
    page reader holds a few pages, not the dataset) with a memory cache that
    holds them all: epoch 0 fetches each page once, later epochs fetch
    nothing (every page a cache hit), and the batches are the local ones."""
    shards = tmp_path / "shards"
    stoker.convert(small_folder, shards, shard_size=16 << 10)
    _upload(s3, shards, "cached")
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_train(32), shuffle=True, seed=7,
              threads=2, on_error="raise", page_bytes=4096, window_pages=2)
    local = stoker.Loader(shards, **kw)
    remote = stoker.Loader(f"s3://{BUCKET}/cached/index.stoker", endpoint_url=moto.endpoint,
                           lookahead=False, cache_memory="64MB", **kw)
    pages = []
    for epoch in range(3):
        local.set_epoch(epoch)
        remote.set_epoch(epoch)
        before = remote.stats()
        want, got = run_epoch(local), run_epoch(remote)
        after = remote.stats()
        for a, b in zip(want, got):
            assert torch.equal(a, b)
        pages.append(after["shard_pages_read"] - before["shard_pages_read"])
        requests = after["requests"] - before["requests"]
        hits = after["cache_hits"] - before["cache_hits"]
        if epoch == 0:
            assert requests == pages[0] and hits == 0
        else:
            assert requests == 0 and hits == pages[epoch]
    assert pages[0] > 4 and all(0 < p <= pages[0] for p in pages[1:])  # each page at most once
