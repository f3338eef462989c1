"""The cache of encoded bytes (cache_memory=, cache_disk=; docs/cache-format.md):
each epoch of a fresh shuffle hits exactly what was kept; a second process
reuses the disk cache; processes killed with SIGKILL while writing it never
leave a sample that reads back wrong; bad directories and budgets are clear
errors.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import stoker


def val():
    return stoker.transforms.imagenet_val(24)


def epoch(loader, e):
    loader.set_epoch(e)
    images, index = [], []
    for b in loader:
        images.append(b["image"].numpy())
        index.extend(b["index"].tolist())
    return np.concatenate(images), index


def test_a_memory_budget_keeps_its_share_every_epoch(image_folder):
    files = sorted(p for p in image_folder.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    budget = int(total * 0.3)
    kw = dict(batch_size=5, transform=val(), shuffle=True, seed=1, threads=2)
    plain = stoker.Loader(image_folder, **kw)
    cached = stoker.Loader(image_folder, cache_memory=budget, **kw)
    n = cached.num_samples
    hits = []
    for e in range(4):
        before = cached.stats()
        a, ia = epoch(plain, e)
        b, ib = epoch(cached, e)
        after = cached.stats()
        assert ia == ib
        np.testing.assert_array_equal(a, b)
        hits.append(after["cache_hits"] - before["cache_hits"])
        assert (after["cache_hits"] + after["cache_misses"]
                - before["cache_hits"] - before["cache_misses"]) == n
    kept = cached.stats()["cache_memory_bytes"]
    assert 0 < kept <= budget
    assert hits[0] == 0 and hits[1] == hits[2] == hits[3] > 0  # every epoch the same share
    assert cached.stats()["requests"] == 4 * n - sum(hits)


def _child(folder, cache_dir, epochs, flag=None):
    return textwrap.dedent(f"""
        import stoker
        loader = stoker.Loader({str(folder)!r}, batch_size=4, shuffle=True, seed=2,
                               transform=stoker.transforms.imagenet_val(24), threads=2,
                               cache_disk="64MB", cache_dir={str(cache_dir)!r})
        for e in range({epochs}):
            loader.set_epoch(e)
            for _ in loader:
                pass
        s = loader.stats()
        print(s["cache_hits"], s["cache_misses"], s["cache_corrupt"])
    """)


def test_a_second_process_reuses_the_disk_cache(image_folder, tmp_path):
    cache = tmp_path / "cache"
    out = subprocess.run([sys.executable, "-c", _child(image_folder, cache, 1)],
                         capture_output=True, text=True, check=True).stdout.split()
    n = stoker.Loader(image_folder, batch_size=1).num_samples
    assert [int(x) for x in out] == [0, n, 0]
    assert oct(os.stat(cache).st_mode & 0o777) == "0o700"
    kw = dict(batch_size=4, shuffle=True, seed=2, transform=val(), threads=2)
    cached = stoker.Loader(image_folder, cache_disk="64MB", cache_dir=cache, **kw)
    a, ia = epoch(stoker.Loader(image_folder, **kw), 0)
    b, ib = epoch(cached, 0)
    assert ia == ib
    np.testing.assert_array_equal(a, b)
    s = cached.stats()
    assert s["cache_hits"] == n and s["cache_misses"] == 0 and s["requests"] == 0


def test_kill_9_while_writing_never_gives_a_wrong_sample(tmp_path, record_behaviour):
    from stoker.datagen import make_imagefolder
    folder = make_imagefolder(tmp_path / "data", 240, 3, seed=4, min_side=96, max_side=200)
    cache = tmp_path / "cache"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _child(folder, cache, 50)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill it once it has written some entries, while it is still writing.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            entries = sum(len(f) for _, _, f in os.walk(cache)) if cache.exists() else 0
            if entries >= 20 * (round_ + 1):
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kw = dict(batch_size=4, shuffle=True, seed=2, transform=val(), threads=2)
    cached = stoker.Loader(folder, cache_disk="64MB", cache_dir=cache, **kw)
    n = cached.num_samples
    for e in (0, 1):
        a, ia = epoch(stoker.Loader(folder, **kw), e)
        b, ib = epoch(cached, e)
        assert ia == ib and sorted(ib) == list(range(n))
        np.testing.assert_array_equal(a, b)
    s = cached.stats()
    assert s["cache_hits"] > 0 and s["samples_skipped"] == 0
    record_behaviour("cache", "processes killed (SIGKILL) while writing the disk cache",
                     "a later run reads every sample's exact bytes: entries appear whole or "
                     "not at all, and each is checked when read")


def test_bad_cache_settings(image_folder, tmp_path, record_behaviour):
    (tmp_path / "file").write_text("x")
    with pytest.raises(stoker.Error, match=r"cache directory .*file"):
        stoker.Loader(image_folder, batch_size=2, cache_disk="1MB", cache_dir=tmp_path / "file")
    with pytest.raises(ValueError, match="not a size"):
        stoker.Loader(image_folder, batch_size=2, cache_memory="lots")
    with pytest.raises(ValueError, match="cache_disk must be >= 0"):
        stoker.Loader(image_folder, batch_size=2, cache_disk=-5)
    record_behaviour("cache", "a cache directory that is a file, or a budget that is not a size",
                     "Loader() raises, naming the directory or the value")
