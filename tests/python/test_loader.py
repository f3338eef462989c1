"""End-to-end behaviour of stoker.Loader on a local ImageFolder."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import stoker


def run_epoch(loader):
    images, labels, indices = [], [], []
    for batch in loader:
        images.append(batch["image"].clone())
        labels.append(batch["label"].clone())
        indices.append(batch["index"].clone())
    return torch.cat(images), torch.cat(labels), torch.cat(indices)


def listing(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(root / d))
    out = []
    for label, cls in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(root / cls)):
            for f in sorted(files):
                out.append((os.path.join(dirpath, f), label))
    return sorted(out, key=lambda p: (p[1], p[0]))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size,drop_last", [(8, False), (8, True), (37, False), (50, False)])
def test_every_sample_exactly_once(image_folder, shuffle, batch_size, drop_last):
    loader = stoker.Loader(image_folder, batch_size=batch_size, shuffle=shuffle, seed=3,
                           drop_last=drop_last, transform=stoker.transforms.imagenet_val(32))
    n = loader.num_samples
    assert n == 37
    expected_batches = n // batch_size if drop_last else -(-n // batch_size)
    assert len(loader) == expected_batches
    sizes = []
    seen = []
    for batch in loader:
        sizes.append(len(batch["index"]))
        seen += batch["index"].tolist()
    assert len(sizes) == expected_batches
    assert all(s == batch_size for s in sizes[:-1])
    if drop_last:
        assert len(seen) == expected_batches * batch_size
        assert len(set(seen)) == len(seen)
    else:
        assert sorted(seen) == list(range(n))
    if not shuffle:
        assert seen == sorted(seen)
    else:
        assert seen != sorted(seen)


def test_labels_match_folders(image_folder):
    expected = listing(image_folder)
    loader = stoker.Loader(image_folder, batch_size=16, shuffle=True,
                           transform=stoker.transforms.imagenet_val(16))
    assert loader.classes == ["ant", "bee", "cow"]
    for batch in loader:
        for idx, label in zip(batch["index"].tolist(), batch["label"].tolist()):
            path, want = expected[idx]
            assert label == want
            assert loader.sample_uri(idx) == path


@pytest.mark.parametrize("transform", [stoker.transforms.imagenet_train(48),
                                       stoker.transforms.imagenet_train(40, normalize=True),
                                       stoker.transforms.imagenet_val(48)])
def test_batches_identical_for_any_thread_count(image_folder, transform):
    results = []
    for threads in (1, 2, 8):
        loader = stoker.Loader(image_folder, batch_size=6, shuffle=True, seed=11,
                               transform=transform, threads=threads, prefetch_batches=2)
        loader.set_epoch(2)
        results.append(run_epoch(loader))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("budget_mb", [128, 0])
def test_jpeg_index_changes_no_pixel(image_folder, budget_mb):
    """Epochs that decode only the crop's MCUs (or, with no memory for that,
    at least start at the crop's MCU row) give the very batches of a loader
    that decodes every image whole."""
    tf = stoker.transforms.imagenet_train(32, scale=(0.05, 0.3))
    on = stoker.Loader(image_folder, batch_size=8, shuffle=True, seed=2, transform=tf, threads=2,
                       jpeg_index_mb=budget_mb)
    off = stoker.Loader(image_folder, batch_size=8, shuffle=True, seed=2, transform=tf, threads=2,
                        jpeg_index=False)
    for epoch in range(4):
        on.set_epoch(epoch)
        off.set_epoch(epoch)
        for a, b in zip(run_epoch(on), run_epoch(off)):
            assert torch.equal(a, b)
    s_on, s_off = on.stats(), off.stats()
    assert s_on["jpeg_index_jumps"] > 0
    if budget_mb:
        assert s_on["jpeg_index_crops"] > 0
        assert 1000 < s_on["jpeg_index_bytes"] < 1 << 20
    else:
        assert s_on["jpeg_index_crops"] == 0
    assert (s_off["jpeg_index_jumps"], s_off["jpeg_index_bytes"]) == (0, 0)


def test_shapes_and_dtypes(image_folder):
    loader = stoker.Loader(image_folder, batch_size=5, transform=stoker.transforms.imagenet_train(24))
    batch = next(iter(loader))
    assert batch["image"].dtype == torch.uint8
    assert tuple(batch["image"].shape) == (5, 3, 24, 24)
    assert batch["label"].dtype == torch.int64 and batch["index"].dtype == torch.int64
    loader = stoker.Loader(image_folder, batch_size=5,
                           transform=stoker.transforms.imagenet_train(24, normalize=True))
    batch = next(iter(loader))
    assert batch["image"].dtype == torch.float32
    assert batch["image"].is_contiguous()
    # Normalised with ImageNet statistics: values span roughly [-2.2, 2.7].
    assert -2.2 <= batch["image"].min() and batch["image"].max() <= 2.7


def test_normalize_matches_uint8(image_folder):
    kw = dict(batch_size=37, shuffle=True, seed=5)
    u8 = next(iter(stoker.Loader(image_folder, transform=stoker.transforms.imagenet_train(32), **kw)))
    f32 = next(iter(stoker.Loader(image_folder, transform=stoker.transforms.imagenet_train(32, normalize=True), **kw)))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = (u8["image"].float() / 255 - mean) / std
    assert torch.allclose(f32["image"], ref, atol=1e-5)


def test_epochs_reshuffle_and_repeat(image_folder):
    loader = stoker.Loader(image_folder, batch_size=37, shuffle=True, seed=0,
                           transform=stoker.transforms.imagenet_train(16))
    loader.set_epoch(0)
    a = run_epoch(loader)
    loader.set_epoch(1)
    b = run_epoch(loader)
    loader.set_epoch(0)
    c = run_epoch(loader)
    assert not torch.equal(a[2], b[2])
    assert torch.equal(a[0], c[0]) and torch.equal(a[2], c[2])
    # Without set_epoch, each completed pass moves to the next epoch.
    d = run_epoch(loader)
    assert torch.equal(d[2], b[2])


def test_batches_stay_valid_after_the_loader_moves_on(image_folder):
    loader = stoker.Loader(image_folder, batch_size=4, transform=stoker.transforms.imagenet_val(16),
                           prefetch_batches=1)
    kept = [b["image"] for b in loader]
    copies = [t.clone() for t in kept]
    again = [b["image"] for b in loader]  # buffers are recycled only once dropped
    for k, c in zip(kept, copies):
        assert torch.equal(k, c)
    assert all(torch.equal(a, c) for a, c in zip(again, copies))


def test_break_mid_epoch_and_restart(image_folder):
    loader = stoker.Loader(image_folder, batch_size=4, transform=stoker.transforms.imagenet_val(16))
    for i, _ in enumerate(loader):
        if i == 2:
            break
    seen = [i for b in loader for i in b["index"].tolist()]
    assert seen == list(range(37))


def test_stats(image_folder):
    loader = stoker.Loader(image_folder, batch_size=10, transform=stoker.transforms.imagenet_val(16))
    for _ in loader:
        pass
    s = loader.stats()
    assert s["samples_delivered"] == 37
    assert s["samples_skipped"] == 0
    assert s["batches_delivered"] == 4
    assert s["requests"] == 37
    total = sum(os.path.getsize(p) for p, _ in listing(image_folder))
    assert s["bytes_read"] == total
    assert s["decode"]["items"] == 37 and s["decode"]["busy_cpu_s"] > 0
    assert s["fetch"]["bytes"] == total
    assert s["stall_s"] >= 0


def test_bad_arguments():
    with pytest.raises(stoker.Error, match="no such directory"):
        stoker.Loader("/nonexistent/stoker/data")
    with pytest.raises(ValueError):
        stoker.Loader("/tmp", on_error="ignore")
    with pytest.raises(ValueError):
        stoker.Loader("/tmp", threads=0)


def test_numpy_without_torch(image_folder):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, stoker\n"
        f"l = stoker.Loader({str(image_folder)!r}, batch_size=8, transform=stoker.transforms.imagenet_val(16))\n"
        "b = next(iter(l))\n"
        "assert isinstance(b['image'], np.ndarray), type(b['image'])\n"
        "assert b['image'].shape == (8, 3, 16, 16) and b['image'].dtype == np.uint8\n"
        "assert b['index'].dtype == np.int64\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
