"""memory_budget= (docs/memory.md): the loader's resident memory grows by no
more than the budget over the process's baseline after import, where the
same settings without a budget grow past it; a budget too small for one
batch is a clear error.
"""
import threading
import time

import pytest

import stoker


def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _peak_growth(make, epochs=2, step_s=0.1):
    """Peak RSS over the baseline while `make()`'s loader runs `epochs`,
    the consumer taking `step_s` per batch (slower than the loader, so the
    loader fills every batch buffer it may)."""
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    loader = make()
    n = 0
    for e in range(epochs):
        loader.set_epoch(e)
        for b in loader:
            n += int(b["label"].shape[0])
            del b
            time.sleep(step_s)
    loader.close()
    del loader
    done.set()
    t.join()
    return peak[0] - base, n


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from stoker.datagen import make_imagefolder
    return make_imagefolder(tmp_path_factory.mktemp("mem") / "data", 1200, 4, seed=3,
                            min_side=96, max_side=160)


def test_the_budget_bounds_resident_memory(folder, record_behaviour):
    # A batch of 112 float32 224 x 224 images is 67 MB: with
    # prefetch_batches=8 and no budget the loader fills up to 10 batch
    # buffers; the budget lowers prefetch_batches to what fits.
    kw = dict(batch_size=112, shuffle=True, threads=2, prefetch_batches=8,
              transform=stoker.transforms.imagenet_train(224, normalize=True))
    budget = 256 << 20
    free, n = _peak_growth(lambda: stoker.Loader(folder, memory_budget=None, **kw))
    bounded, m = _peak_growth(lambda: stoker.Loader(folder, memory_budget="256MB", **kw))
    assert n == m == 2400
    assert free > budget  # the test can fail: unbounded, the loader needs more
    assert bounded <= budget, f"grew {bounded / 2**20:.0f} MB, budget 256 MB"
    s = stoker.Loader(folder, memory_budget="256MB", **kw).stats()
    assert s["memory.budget_bytes"] == budget
    assert s["memory.planned_bytes"] <= budget and s["memory.batch_buffers"] == 3
    record_behaviour("memory", "memory_budget='256MB' with batches of 67 MB and prefetch_batches=8",
                     "resident memory grows by at most the budget (three batch buffers "
                     "instead of ten; the other pools shrunk to their shares)")


def test_a_budget_too_small_for_one_batch(folder, record_behaviour):
    with pytest.raises(stoker.Error, match=r"memory_budget 64 MB cannot hold one batch: a batch "
                                            r"of 112 images takes 65 MB"):
        stoker.Loader(folder, batch_size=112, memory_budget="64MB",
                      transform=stoker.transforms.imagenet_train(224, normalize=True))
    record_behaviour("memory", "a memory_budget smaller than three batches and the scratch",
                     "Loader() raises, saying what one batch and the scratch need")
