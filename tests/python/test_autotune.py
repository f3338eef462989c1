"""Autotuning (docs/autotune.md): with the defaults the loader picks its
decode threads and batches ahead while it runs, within cpu_budget and
memory_budget; a setting given explicitly is never changed; a change in the
middle of an epoch loses and repeats no sample.
"""
import os

import pytest

import stoker


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from stoker.datagen import make_imagefolder
    return make_imagefolder(tmp_path_factory.mktemp("tune") / "data", 240, 3, seed=5,
                            min_side=48, max_side=96)


def _small():
    return stoker.transforms.imagenet_val(32)


def _epoch(loader, epoch, step=None):
    """The dataset indices one epoch delivered, in order."""
    loader.set_epoch(epoch)
    seen = []
    for b in loader:
        seen += [int(i) for i in b["index"]]
        if step:
            step()
    return seen


def test_explicit_settings_are_kept(folder, record_behaviour):
    loader = stoker.Loader(folder, batch_size=16, shuffle=True, threads=1, prefetch_batches=3,
                           transform=_small())
    import time
    for e in range(3):
        assert sorted(_epoch(loader, e, step=lambda: time.sleep(0.02))) == list(range(240))
    s = loader.stats()
    assert (s["autotune.threads"], s["autotune.prefetch_batches"]) == (1, 3)
    assert s["autotune.tuning_threads"] == 0 and s["autotune.tuning_prefetch"] == 0
    assert s["autotune.changes"] == 0
    assert loader.profile()["autotune"] == ""
    record_behaviour("autotune", "threads=1, prefetch_batches=3 given, a slow consumer",
                     "both kept as given; stats() shows autotune.tuning_* = 0")


def test_defaults_are_tuned_within_the_cpu_budget(folder):
    loader = stoker.Loader(folder, batch_size=16, transform=_small(), cpu_budget=1)
    s = loader.stats()
    assert s["autotune.tuning_threads"] == 1 and s["autotune.tuning_prefetch"] == 1
    assert s["autotune.max_threads"] == 1 and loader.threads == 1
    assert s["autotune.prefetch_batches"] == 2
    assert 2 <= s["autotune.max_prefetch_batches"] <= 32
    assert sorted(_epoch(loader, 0)) == list(range(240))
    assert loader.threads == 1


def test_set_threads_stops_the_tuning_of_threads(folder):
    loader = stoker.Loader(folder, batch_size=16, transform=_small())
    loader.set_threads(1)
    assert loader.stats()["autotune.tuning_threads"] == 0
    assert loader.threads == 1
    loader.set_threads("auto")
    assert loader.stats()["autotune.tuning_threads"] == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to give one back")
def test_a_slow_consumer_gets_the_cores_back(folder, record_behaviour):
    # A training step far slower than decoding: one decode thread keeps up,
    # so the tuner gives the other cores back, in the middle of an epoch,
    # and every epoch still delivers each sample exactly once.
    import time
    loader = stoker.Loader(folder, batch_size=8, shuffle=True, transform=_small())
    start = loader.threads
    assert start == len(os.sched_getaffinity(0))
    e = 0
    while loader.threads > 1 and e < 20:  # about 1.5 s an epoch; tuned in 3 or 4
        assert sorted(_epoch(loader, e, step=lambda: time.sleep(0.05))) == list(range(240))
        e += 1
    s = loader.stats()
    assert loader.threads == 1, s
    assert s["autotune.threads"] == 1 and s["autotune.changes"] >= 1
    assert "fewer decode threads" in loader.profile()["autotune"]
    # The next epoch, at one thread, is whole too.
    assert sorted(_epoch(loader, e)) == list(range(240))
    record_behaviour("autotune", "defaults, a consumer 50 ms per batch of 8 (decoding needs "
                                 "a fraction of one core)",
                     "decode threads go down to 1 during the run; each epoch delivers every "
                     "sample once")


def _mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def test_the_default_memory_budget_is_a_quarter_of_what_is_available(folder, record_behaviour):
    avail = _mem_available()
    if avail is None:
        pytest.skip("no MemAvailable in /proc/meminfo")
    s = stoker.Loader(folder, batch_size=16, transform=_small()).stats()
    # What the cgroup leaves may be less than MemAvailable.
    assert 0 < s["memory.budget_bytes"] <= avail / 4 * 1.1
    assert stoker.Loader(folder, batch_size=16, transform=_small(),
                         memory_budget=None).stats()["memory.budget_bytes"] == 0
    with pytest.raises(ValueError, match="memory_budget must be > 0 bytes, 'auto' or None"):
        stoker.Loader(folder, memory_budget=0)
    with pytest.raises(ValueError, match="prefetch_batches must be a positive int or 'auto'"):
        stoker.Loader(folder, prefetch_batches=0)
    with pytest.raises(ValueError, match="cpu_budget must be a positive int"):
        stoker.Loader(folder, cpu_budget=0)
    record_behaviour("autotune", "no memory_budget given",
                     "a quarter of the memory available when the loader opens (stats() "
                     "memory.budget_bytes); memory_budget=None: none")
