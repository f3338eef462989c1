"""Bad samples: skipped and counted, or raised naming the file and the reason."""
import os

import numpy as np
import pytest

import stoker
from conftest import encode, textured


@pytest.fixture()
def folder_with_bad_files(tmp_path):
    rng = np.random.default_rng(7)
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for i in range(10):
        (good / f"{i}.jpg").write_bytes(encode(textured(rng, 120, 90)))
    jpeg = encode(textured(rng, 200, 160))
    bad_files = {
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "empty.jpg": b"",
        "random.jpg": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "text.png": b"this is not an image\n" * 10,
        "header_only.jpg": jpeg[:200],
    }
    for name, data in bad_files.items():
        (bad / name).write_bytes(data)
    os.symlink(tmp_path / "does-not-exist.jpg", bad / "broken_link.jpg")
    (bad / "dir.jpg").mkdir()  # a directory named like an image is not a sample
    # A PNG named .jpg is a valid image: decoded by its content, not its name.
    (good / "png_named.jpg").write_bytes(encode(textured(rng, 64, 64), "PNG"))
    return tmp_path, sorted(list(bad_files) + ["broken_link.jpg"])


def test_skip_counts_each_bad_file(folder_with_bad_files, capfd):
    root, bad = folder_with_bad_files
    loader = stoker.Loader(root, batch_size=4, shuffle=True,
                           transform=stoker.transforms.imagenet_train(32))
    assert loader.num_samples == 11 + len(bad)
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = []
        for batch in loader:
            seen += batch["index"].tolist()
            assert batch["image"].shape[0] == len(batch["index"])
        assert len(seen) == 11
        assert all(loader.sample_uri(i).startswith(str(root / "good")) for i in seen)
    stats = loader.stats()
    assert stats["samples_skipped"] == 2 * len(bad)
    assert stats["samples_delivered"] == 22
    assert sum(stats["errors_by_kind"].values()) == 2 * len(bad)
    err = capfd.readouterr().err
    for name in bad:
        assert err.count(name) == 1, (name, err)  # logged once, not every epoch


@pytest.mark.parametrize("name,reason", [
    ("truncated.jpg", "truncat"),
    ("empty.jpg", "empty"),
    ("random.jpg", "not a JPEG or PNG"),
    ("text.png", "not a JPEG or PNG"),
    ("broken_link.jpg", "No such file"),
])
def test_raise_names_file_and_reason(folder_with_bad_files, name, reason):
    root, _ = folder_with_bad_files
    uri = str(root / "bad" / name)
    manifest = root / "one.csv"
    manifest.write_text(f"path,label\ngood/0.jpg,0\n{uri},1\n")
    loader = stoker.Loader(manifest, batch_size=2, on_error="raise",
                           transform=stoker.transforms.imagenet_val(32))
    with pytest.raises(stoker.Error) as info:
        for _ in loader:
            pass
    assert uri in str(info.value)
    assert reason.lower() in str(info.value).lower()


def test_decompression_bomb_is_refused(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "big.jpg").write_bytes(encode(textured(np.random.default_rng(0), 300, 200)))
    loader = stoker.Loader(tmp_path, batch_size=1, max_pixels=300 * 200 - 1, on_error="raise",
                           transform=stoker.transforms.imagenet_val(32))
    with pytest.raises(stoker.Error, match="big.jpg"):
        next(iter(loader))


def test_manifest_with_missing_file_is_skipped(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "a.jpg").write_bytes(encode(textured(rng, 80, 80)))
    (tmp_path / "m.jsonl").write_text('{"path": "a.jpg", "label": 5}\n\n{"path": "gone.jpg", "label": 1}\n')
    loader = stoker.Loader(tmp_path / "m.jsonl", batch_size=4,
                           transform=stoker.transforms.imagenet_val(16))
    batches = list(loader)
    assert len(batches) == 1
    assert batches[0]["label"].tolist() == [5]
    assert loader.stats()["errors_by_kind"] == {"not found": 1}


def test_bad_manifest_raises_with_line(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.jpg,1\nb.jpg,dog\n")
    with pytest.raises(stoker.Error, match=r"m\.csv:3.*dog"):
        stoker.Loader(tmp_path / "m.csv")
