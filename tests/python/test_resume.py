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
