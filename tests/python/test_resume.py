"""state_dict / load_state_dict: resume mid-epoch, also with a new world size."""
import pytest
import torch

import stoker

T = stoker.transforms.imagenet_train(24)


def make(root, **kw):
    args = dict(batch_size=4, shuffle=True, seed=21, transform=T)
    args.update(kw)
    return stoker.Loader(root, **args)


def collect(it, limit=None):
    out = []
    for i, b in enumerate(it):
        out.append((b["index"].clone(), b["image"].clone()))
        if limit is not None and i + 1 == limit:
            break
    return out


@pytest.mark.parametrize("k", [0, 1, 5, 9])
def test_resume_equals_uninterrupted_epoch(image_folder, k):
    full = make(image_folder)
    full.set_epoch(1)
    expected = collect(full)
    assert len(expected) == 10

    first = make(image_folder)
    first.set_epoch(1)
    head = collect(first, limit=k) if k else []
    state = first.state_dict()
    assert state["epoch"] == 1 and state["position"] == min(4 * k, 37)
    del first

    resumed = make(image_folder)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # the usual first call of a resumed loop keeps the position
    tail = collect(resumed)
    got = head + tail
    assert len(got) == len(expected)
    for (gi, gx), (ei, ex) in zip(got, expected):
        assert torch.equal(gi, ei)
        assert torch.equal(gx, ex)  # same random crops: pixels included


def test_state_is_small_and_json_friendly(image_folder):
    import json
    loader = make(image_folder)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    assert set(state) == {"version", "seed", "shuffle", "num_samples", "epoch", "position"}
    assert json.loads(json.dumps(state)) == state


def test_finished_epoch_points_to_the_next(image_folder):
    loader = make(image_folder)
    loader.set_epoch(3)
    collect(loader)
    state = loader.state_dict()
    assert (state["epoch"], state["position"]) == (4, 0)


def test_elastic_two_ranks_then_one(image_folder):
    n, k = 37, 3
    seen = []
    states = []
    for rank in range(2):
        loader = make(image_folder, rank=rank, world_size=2)
        loader.set_epoch(0)
        for idx, _ in collect(loader, limit=k):
            seen += idx.tolist()
        states.append(loader.state_dict())
    assert states[0] == states[1]
    assert states[0]["position"] == 2 * k * 4
    single = make(image_folder, rank=0, world_size=1)
    single.load_state_dict(states[0])
    for idx, _ in collect(single):
        seen += idx.tolist()
    assert sorted(seen) == list(range(n))


def test_state_for_another_dataset_is_refused(image_folder):
    loader = make(image_folder)
    state = loader.state_dict()
    other = make(image_folder, seed=22)
    with pytest.raises(stoker.Error, match="seed"):
        other.load_state_dict(state)
    with pytest.raises(ValueError):
        loader.load_state_dict({"epoch": 1})


@pytest.fixture(scope="module")
def eleven(tmp_path_factory):
    """11 small JPEGs: an odd N, so rounds of 2..5 ranks leave a padded or
    dropped tail."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp("eleven")
    rng = np.random.default_rng(11)
    (root / "c").mkdir()
    for i in range(11):
        arr = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / "c" / f"{i:02d}.jpg", quality=90)
    return root


def rank_streams(root, world, bs, drop_last, state=None):
    """Each rank's dataset indices in delivery order, one list per batch."""
    out = []
    for rank in range(world):
        loader = stoker.Loader(root, batch_size=bs, shuffle=True, seed=4, threads=1,
                               transform=stoker.transforms.imagenet_val(8), rank=rank,
                               world_size=world, drop_last=drop_last)
        if state is not None:
            loader.load_state_dict(state)
        loader.set_epoch(2)
        out.append([b["index"].tolist() for b in loader])
    return out


# Through the Loader: a state saved after every batch count (up to the
# padded or dropped last round) at world size W, resumed at W'. The contract
# (as the sampler tests check exhaustively): what was delivered before the
# save is the first `position` samples of the epoch's order; the resumed pass
# delivers each remaining sample once; drop_last=False pads the last round
# with the first samples of the order (fewer than W'), drop_last=True drops
# fewer than W' * batch_size from the end, and with W' = W the epoch is
# exactly the uninterrupted one.
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("w0,w1", [(1, 3), (4, 2), (2, 5), (3, 3)])
def test_resume_across_world_sizes_each_sample_once(eleven, w0, w1, drop_last):
    n, bs = 11, 2
    # The epoch's global order, which no world size changes: one rank, in order.
    order = [i for b in rank_streams(eleven, 1, 1, False)[0] for i in b]
    assert sorted(order) == list(range(n))
    full = rank_streams(eleven, w0, bs, drop_last)
    for rank, batches in enumerate(full):  # rank r takes positions r, r + W, ...
        flat = [i for b in batches for i in b]
        assert flat == [order[(rank + k * w0) % n] for k in range(len(flat))]
    uninterrupted = sorted(i for batches in full for b in batches for i in b)
    for saved_after in range(len(full[0])):
        loader = stoker.Loader(eleven, batch_size=bs, shuffle=True, seed=4, threads=1,
                               transform=stoker.transforms.imagenet_val(8), rank=0,
                               world_size=w0, drop_last=drop_last)
        loader.set_epoch(2)
        it = iter(loader)
        for _ in range(saved_after):
            next(it)
        state = loader.state_dict()
        del it, loader
        position = saved_after * bs * w0
        assert (state["epoch"], state["position"]) == (2, position)
        head = [i for batches in full for b in batches[:saved_after] for i in b]
        assert sorted(head) == sorted(order[:position])
        resumed = rank_streams(eleven, w1, bs, drop_last, state)
        assert len({len(batches) for batches in resumed}) == 1  # every rank: as many batches
        tail = [i for batches in resumed for b in batches for i in b]
        left = n - position
        if drop_last:
            kept = left // (w1 * bs) * (w1 * bs)
            assert len(tail) == kept
            assert sorted(head + tail) == sorted(order[:position + kept])
            assert len(set(head + tail)) == len(head + tail)  # each once
            if w1 == w0:
                assert sorted(head + tail) == uninterrupted
        else:
            padding = -left % w1
            assert len(tail) == left + padding
            assert sorted(head + tail) == sorted(list(range(n)) + order[:padding])
        if w1 == w0:
            for rank in range(w0):
                assert resumed[rank] == full[rank][saved_after:]
