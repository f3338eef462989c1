"""cache_decoded= (docs/cache-format.md "Decoded"): samples kept as the
transform left them are copied into later epochs' batches, which are
exactly the batches decoding gives, without reading or decoding again;
a budget keeps what fits; a transform that differs between epochs cannot
be cached.
"""
import pytest
import torch

import stoker

N = 90


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from stoker.datagen import make_imagefolder
    return make_imagefolder(tmp_path_factory.mktemp("dec") / "data", N, 3, seed=9,
                            min_side=40, max_side=90)


def _val():
    return stoker.transforms.imagenet_val(32, normalize=True)


def _epochs(loader, n):
    out = []
    for e in range(n):
        loader.set_epoch(e)
        out.append([(b["index"].clone(), b["image"].clone(), b["label"].clone())
                    for b in loader])
    return out


def test_kept_samples_give_the_decoded_batches_without_reading(folder, record_behaviour):
    plain = stoker.Loader(folder, batch_size=16, shuffle=True, seed=3, transform=_val())
    cached = stoker.Loader(folder, batch_size=16, shuffle=True, seed=3, transform=_val(),
                           cache_decoded="1GB")
    want = _epochs(plain, 3)
    cached.set_epoch(0)
    got = [_epochs(cached, 1)[0]]
    s0 = cached.stats()
    assert s0["decoded_cache_samples"] == N and s0["decoded_cache_hits"] == 0
    assert s0["decoded_cache_bytes"] == N * 3 * 32 * 32 * 4
    reads = s0["bytes_read"]
    for e in (1, 2):
        cached.set_epoch(e)
        got.append([(b["index"].clone(), b["image"].clone(), b["label"].clone())
                    for b in cached])
    s = cached.stats()
    assert s["decoded_cache_hits"] == 2 * N
    assert s["bytes_read"] == reads  # nothing read after the first epoch
    for we, ge in zip(want, got):
        assert len(we) == len(ge)
        for (wi, wx, wl), (gi, gx, gl) in zip(we, ge):
            assert torch.equal(wi, gi) and torch.equal(wl, gl)
            assert torch.equal(wx, gx)  # exact pixels
    record_behaviour("cache", "cache_decoded with imagenet_val, epochs after the first",
                     "batches equal to decoding's, bit for bit; no byte read, every sample "
                     "a decoded-cache hit")


def test_the_budget_keeps_what_fits(folder):
    one = 3 * 32 * 32 * 4
    loader = stoker.Loader(folder, batch_size=16, shuffle=True, transform=_val(),
                           cache_decoded=30 * one + one // 2)
    _epochs(loader, 1)
    s = loader.stats()
    assert s["decoded_cache_samples"] == 30 and s["decoded_cache_bytes"] == 30 * one
    loader.set_epoch(1)
    assert sorted(int(i) for b in loader for i in b["index"]) == list(range(N))
    assert loader.stats()["decoded_cache_hits"] == 30


def test_random_ops_and_hooks_are_refused(folder, record_behaviour):
    T = stoker.transforms
    with pytest.raises(stoker.Error, match="RandomResizedCrop is random"):
        stoker.Loader(folder, transform=T.imagenet_train(32), cache_decoded="1GB")
    flip = T.Compose([T.Resize(40), T.CenterCrop(32), T.RandomHorizontalFlip()])
    with pytest.raises(stoker.Error, match="RandomHorizontalFlip is random"):
        stoker.Loader(folder, transform=flip, cache_decoded="1GB")
    with pytest.raises(stoker.Error, match="not with fields= or map="):
        stoker.Loader(folder, transform=_val(), cache_decoded="1GB", map=lambda s: s)
    with pytest.raises(ValueError, match="cache_decoded must be >= 0"):
        stoker.Loader(folder, transform=_val(), cache_decoded=-1)
    record_behaviour("cache", "cache_decoded with a random transform (imagenet_train), or "
                              "with map=",
                     "Loader() raises, naming the random op, or saying fields= and map= "
                     "cannot be kept decoded")
