"""`stoker profile` and loader.profile(): the bottleneck it names, shares that
sum to 1, and the trace. Each case builds a situation whose bottleneck is
known by construction and asserts the stage named, never a time."""

import json
import os
import subprocess
import sys

import pytest

import stoker
from stoker.datagen import make_imagefolder

STOKER = [sys.executable, "-m", "stoker.cli"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    make_imagefolder(root, n_images=192, n_classes=4, min_side=300, max_side=400)
    return root


def profile_json(*args):
    out = subprocess.run(STOKER + ["profile", *map(str, args), "--json"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def check_shares(r):
    shares = {s["name"]: s["wait_share"] for s in r["stages"]}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert r["bottleneck"] == max(shares, key=shares.get)
    assert r["bottleneck"] in r["summary"]
    return shares


def test_one_decode_thread_is_decode_bound(folder):
    # One decode thread, local files in the page cache, a consumer that does
    # nothing: the batch the consumer waits for always has its bytes.
    r = profile_json(folder, "--threads", "1", "--batch-size", "16", "--epochs", "2")
    shares = check_shares(r)
    assert r["bottleneck"] == "decode", shares
    assert r["images"] == 2 * 192
    dec = next(s for s in r["stages"] if s["name"] == "decode")
    assert dec["items"] == 2 * 192 and dec["parallelism"] == 1 and dec["rate_per_core"] > 0
    w = r["whatif"]
    assert w["one_more_decode_thread_images_per_s"] > 0 and w["no_stall_step_ms"] > 0
    assert r["energy_source"] in ("rapl", "estimate")
    assert r["energy_j_per_image"] > 0 and r["cpu_s_per_image"] > 0


def test_a_slow_training_step_is_consumer_bound(folder):
    # 200 ms per batch of 16: far slower than decoding 16 images.
    r = profile_json(folder, "--threads", "2", "--batch-size", "16", "--step-ms", "200",
                     "--max-batches", "8", "--transform", "val", "--size", "64")
    shares = check_shares(r)
    assert r["bottleneck"] == "consumer", shares
    assert "consumer" in r["summary"]


def test_trace_has_one_span_per_sample_and_stage(folder, tmp_path):
    trace = tmp_path / "trace.json"
    r = profile_json(folder, "--threads", "2", "--batch-size", "16", "--trace", trace,
                     "--transform", "val", "--size", "32")
    doc = json.loads(trace.read_text())
    events = doc["traceEvents"]
    by = {}
    for e in events:
        by.setdefault((e["ph"], e["name"]), []).append(e)
    # Every sample: one decode span, one fetch begin and one fetch end, and
    # they name each position of the pass exactly once.
    ks = list(range(192))
    assert sorted(e["args"]["k"] for e in by[("X", "decode")]) == ks
    assert sorted(e["args"]["k"] for e in by[("b", "fetch")]) == ks
    assert sorted(e["args"]["k"] for e in by[("e", "fetch")]) == ks
    # A collate span per batch.
    assert sorted(e["args"]["k"] for e in by[("X", "collate")]) == list(range(12))
    for e in by[("X", "decode")]:
        assert e["dur"] >= 0 and e["ts"] >= 0
    begins = {e["id"]: e["ts"] for e in by[("b", "fetch")]}
    for e in by[("e", "fetch")]:
        assert e["ts"] >= begins[e["id"]]
    # Threads are named, so the tracks read as stages.
    names = {e["args"]["name"] for e in events if e["ph"] == "M"}
    assert "stoker-fetch" in names and any(n.startswith("stoker-decode") for n in names)
    assert r["images"] == 192


def test_stats_come_from_the_registry(folder):
    loader = stoker.Loader(folder, batch_size=16, threads=2,
                           transform=stoker.transforms.imagenet_val(32))
    n = sum(int(b["label"].shape[0]) for b in loader)
    s = loader.stats()
    assert n == s["samples_delivered"] == 192
    assert s["batches_delivered"] == 12
    stages = {st["name"]: st for st in s["stages"]}
    assert list(stages) == ["plan", "fetch", "decode", "collate", "deliver"]
    assert stages["plan"]["items"] == stages["fetch"]["items"] == stages["decode"]["items"] == 192
    assert stages["collate"]["items"] == 12
    queues = {q["name"]: q for q in s["queues"]}
    assert queues["fetched"]["puts"] == queues["fetched"]["gets"] == 192
    assert queues["complete"]["puts"] == queues["complete"]["gets"] == 12
    assert s["fetch.latency_count"] == 192
    # The consumer's waits, split by stage, add up to its stall.
    split = s["wait.fetch_s"] + s["wait.decode_s"] + s["wait.collate_s"]
    assert split == pytest.approx(s["stall_s"], rel=1e-6, abs=1e-6)
    loader.close()


def test_set_threads_mid_epoch_changes_no_batch(folder):
    tf = stoker.transforms.imagenet_train(32)

    def epoch(change):
        loader = stoker.Loader(folder, batch_size=16, threads=1, shuffle=True, seed=3, transform=tf)
        out = []
        for i, b in enumerate(loader):
            out.append((b["index"].tolist(), b["image"].numpy().tobytes()))
            if change and i == 2:
                loader.set_threads(3)
            if change and i == 6:
                loader.set_threads(1)
        assert loader.threads == (1 if change else 1)
        loader.close()
        return out

    assert epoch(True) == epoch(False)


def test_close_is_for_good(folder):
    loader = stoker.Loader(folder, batch_size=16, transform=stoker.transforms.imagenet_val(32))
    next(iter(loader))
    loader.close()
    with pytest.raises(stoker.Error, match="closed"):
        next(iter(loader))
