"""map= (per sample, on the decode threads) and batch_map= (per batch, on the
loader's map thread): what they see, what their results become, that they
run off the consumer's thread, and that an exception follows on_error."""
import threading

import numpy as np
import pytest
import torch

import stoker
from conftest import encode, textured

N = 11


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("hooks")
    rng = np.random.default_rng(4)
    for c in ("a", "b"):
        (root / c).mkdir()
        for i in range(N):
            (root / c / f"s{i:02d}.jpg").write_bytes(encode(textured(rng, 36 + i, 30)))
            (root / c / f"s{i:02d}.txt").write_text(f"{c}-{i}")
    return root


def loader(root, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("transform", stoker.transforms.imagenet_train(24))
    kw.setdefault("shuffle", True)
    kw.setdefault("seed", 3)
    return stoker.Loader(root, **kw)


def test_map_changes_image_and_label_and_adds_keys(folder):
    main = threading.get_ident()
    seen_threads = set()

    def fn(s):
        seen_threads.add(threading.get_ident())
        assert s["image"].shape == (3, 24, 24) and s["image"].dtype == torch.uint8
        s["image"] = 255 - s["image"]
        s["label"] = s["label"] * 10 + 1
        s["length"] = len(s["txt"])
        s["vec"] = torch.full((2,), float(s["index"]))
        s["name"] = s["txt"].upper()
        return s

    mapped = loader(folder, fields=["txt"], map=fn, threads=2)
    plain = loader(folder, fields=["txt"], threads=2)
    n = 0
    for m, p in zip(mapped, plain):
        assert torch.equal(m["image"], 255 - p["image"])  # the same crops, mapped
        assert m["label"].tolist() == [l * 10 + 1 for l in p["label"].tolist()]
        assert m["index"].tolist() == p["index"].tolist()
        assert m["length"].tolist() == [len(t) for t in p["txt"]]  # ints: a tensor
        assert torch.equal(m["vec"], p["index"].double().float()[:, None].expand(-1, 2))
        assert m["name"] == [t.upper() for t in p["txt"]]  # str: a list
        n += len(m["index"])
    assert n == 2 * N
    assert main not in seen_threads  # run on the loader's threads


def test_map_output_is_the_same_for_any_thread_count(folder):
    def fn(s):
        s["image"] = s["image"] // 2
        s["sum"] = int(s["image"].sum())
        return s

    runs = []
    for threads in (1, 3):
        runs.append([(b["index"].tolist(), b["sum"].tolist(), b["image"].clone())
                     for b in loader(folder, map=fn, threads=threads)])
    for (i1, s1, im1), (i2, s2, im2) in zip(*runs):
        assert i1 == i2 and s1 == s2 and torch.equal(im1, im2)


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_map_exception_follows_on_error_naming_the_sample(folder, on_error, record_behaviour):
    bad = 5

    def fn(s):
        if s["index"] == bad:
            raise ValueError("no good")
        return s

    l = loader(folder, map=fn, on_error=on_error, shuffle=False)
    uri = l.sample_uri(bad)
    if on_error == "raise":
        with pytest.raises(stoker.Error) as info:
            list(l)
        assert str(info.value) == f"invalid argument: {uri}: map raised ValueError: no good"
        outcome = f"next() raises stoker.Error '{info.value}'"
    else:
        got = [i for b in l for i in b["index"].tolist()]
        assert got == [i for i in range(2 * N) if i != bad]
        assert l.stats()["samples_skipped"] == 1
        outcome = "the sample is skipped and counted, the file named in the log"
    record_behaviour("hooks", f"map= raises (on_error={on_error})", outcome)


def test_map_result_checked(folder):
    wrong_shape = loader(folder, map=lambda s: {**s, "image": s["image"][:, :10]}, on_error="raise")
    with pytest.raises(stoker.Error, match=r"map returned an image of shape 3 x 10 x 24 \(8-bit\); "
                                           r"the batch holds 3 x 24 x 24 images of uint8"):
        list(wrong_shape)
    not_dict = loader(folder, map=lambda s: None, on_error="raise")
    with pytest.raises(stoker.Error, match="map raised TypeError: map must return a dict, got NoneType"):
        list(not_dict)
    # A non-contiguous view of the right shape is copied element by element.
    flipped = loader(folder, map=lambda s: {**s, "image": s["image"].flip(2)}, shuffle=False,
                     transform=stoker.transforms.imagenet_val(24))
    plain = loader(folder, shuffle=False, transform=stoker.transforms.imagenet_val(24))
    for f, p in zip(flipped, plain):
        assert torch.equal(f["image"], p["image"].flip(3))


def test_batch_map_runs_ahead_on_a_loader_thread(folder):
    main = threading.get_ident()
    threads = set()

    def fn(batch):
        threads.add(threading.get_ident())
        return batch["image"].float().mean(dim=(1, 2, 3)), batch["index"], batch["txt"]

    plain = loader(folder, fields=["txt"])
    mapped = loader(folder, fields=["txt"], batch_map=fn)
    count = 0
    for out, p in zip(mapped, plain):
        means, index, txt = out
        assert torch.allclose(means, p["image"].float().mean(dim=(1, 2, 3)))
        assert index.tolist() == p["index"].tolist() and txt == p["txt"]
        count += 1
    assert count == len(plain)
    assert threads and main not in threads


def test_batch_map_sees_what_map_added(folder):
    out = list(loader(folder, map=lambda s: {**s, "k": s["index"] * 2},
                      batch_map=lambda b: (b["index"].tolist(), b["k"].tolist())))
    for index, k in out:
        assert k == [i * 2 for i in index]


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_batch_map_exception(folder, on_error, record_behaviour):
    def fn(batch):
        if 3 in batch["index"].tolist():
            raise RuntimeError("bad batch")
        return batch["index"].tolist()

    l = loader(folder, batch_map=fn, on_error=on_error, shuffle=False)
    if on_error == "raise":
        with pytest.raises(stoker.Error) as info:
            list(l)
        assert str(info.value) == ("invalid argument: batch 0 of epoch 0: batch_map raised "
                                   "RuntimeError: bad batch")
        outcome = f"next() raises stoker.Error '{info.value}'"
    else:
        got = [i for b in l for i in b]
        assert got == list(range(4, 2 * N))
        assert l.stats()["samples_skipped"] == 4
        assert l.stats()["samples_delivered"] == 2 * N - 4
        outcome = "the batch is skipped, its samples counted as skipped"
    record_behaviour("hooks", f"batch_map= raises (on_error={on_error})", outcome)


def test_hooks_and_resume(folder):
    """A map's output is a function of the sample: a resumed loader gives
    the rest of the epoch's mapped batches exactly."""
    fn = lambda s: {**s, "image": s["image"] ^ 0x55}
    full = [(b["index"].tolist(), b["image"].clone()) for b in loader(folder, map=fn)]
    first = loader(folder, map=fn)
    it = iter(first)
    next(it)
    state = first.state_dict()
    del it
    resumed = loader(folder, map=fn)
    resumed.load_state_dict(state)
    rest = [(b["index"].tolist(), b["image"].clone()) for b in resumed]
    assert len(rest) == len(full) - 1
    for (i1, im1), (i2, im2) in zip(full[1:], rest):
        assert i1 == i2 and torch.equal(im1, im2)


def test_batch_map_results_holding_the_batch_are_freed(folder):
    """A batch_map result that holds the batch's own arrays (which keep the
    batch's buffers alive) is freed once dropped: the batch does not keep
    it (a cycle through C++ that Python's collector cannot see)."""
    import gc
    import weakref
    l = loader(folder, batch_map=lambda b: b["image"])
    refs = [weakref.ref(images) for images in l]
    assert len(refs) == len(l) and all(r() is None for r in refs)
    # Stopped after one batch: the batches mapped ahead and never delivered
    # are let go as well.
    it = iter(loader(folder, batch_map=lambda b: b["image"], prefetch_batches=3))
    first = weakref.ref(next(it))
    del it
    gc.collect()
    assert first() is None
