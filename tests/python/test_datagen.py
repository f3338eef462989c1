"""stoker.datagen: the synthetic ImageNet-like ImageFolder."""

import os

import pytest

from stoker import datagen

Image = pytest.importorskip("PIL.Image")

N, K = 50, 10  # ~1 s to generate; enough for a stable mean file size


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return datagen.make_imagefolder(tmp_path_factory.mktemp("gen") / "ds", n_images=N, n_classes=K)


def _jpegs(root):
    return sorted(p for p in root.rglob("*.jpg"))


def test_layout_and_counts(folder):
    files = _jpegs(folder)
    assert len(files) == N
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert classes == [f"class_{c:02d}" for c in range(K)]
    for c in range(K):
        assert len(list((folder / f"class_{c:02d}").glob("img_*.jpg"))) == N // K
    # image i is in class i % K
    assert (folder / "class_03" / "img_00013.jpg").exists()
    assert datagen.image_path(folder, 13, N, K) == folder / "class_03" / "img_00013.jpg"
    assert not list(folder.rglob("*.tmp"))


def test_sizes_in_range(folder):
    for p in _jpegs(folder):
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert all(350 <= s <= 600 for s in im.size), (p, im.size)


def test_mean_file_size_like_imagenet(folder):
    sizes = [p.stat().st_size for p in _jpegs(folder)]
    mean = sum(sizes) / len(sizes)
    assert 100e3 <= mean <= 150e3, mean
    marker = datagen.read_marker(folder)
    assert marker["complete"] and marker["total_bytes"] == sum(sizes)


def test_deterministic_and_independent_of_workers(folder, tmp_path):
    # Same seed, fewer images, made in this process instead of a pool: the
    # shared images have the same bytes.
    small = datagen.make_imagefolder(tmp_path / "small", n_images=6, n_classes=K, workers=1)
    for i in range(6):
        a = datagen.image_path(folder, i, N, K).read_bytes()
        b = datagen.image_path(small, i, 6, K).read_bytes()
        assert a == b, i
    other = datagen.make_imagefolder(tmp_path / "other", n_images=3, n_classes=K, seed=1)
    assert datagen.image_path(other, 0, 3, K).read_bytes() != \
        datagen.image_path(folder, 0, N, K).read_bytes()


def test_textured_not_flat(folder):
    np = pytest.importorskip("numpy")
    with Image.open(datagen.image_path(folder, 0, N, K)) as im:
        a = np.asarray(im.convert("L"), dtype=np.float32)
    # Fine detail: neighbouring pixels differ, as in photos.
    assert np.abs(np.diff(a, axis=1)).mean() > 4
    assert a.std() > 15


def test_marker_skips_regeneration(tmp_path):
    root = datagen.make_imagefolder(tmp_path / "d", n_images=4, n_classes=2)
    assert datagen.is_generated(root, 4, 2)
    f = datagen.image_path(root, 1, 4, 2)
    before = f.stat().st_mtime_ns
    assert datagen.make_imagefolder(root, n_images=4, n_classes=2) == root
    assert f.stat().st_mtime_ns == before
    # Other parameters: regenerated in place, old images gone.
    datagen.make_imagefolder(root, n_images=3, n_classes=3)
    assert len(_jpegs(root)) == 3 and not (root / "class_01" / "img_00003.jpg").exists()
    assert datagen.is_generated(root, 3, 3) and not datagen.is_generated(root, 4, 2)


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        datagen.make_imagefolder(tmp_path, n_images=2, n_classes=1)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_interrupted_generation_is_redone(tmp_path):
    root = datagen.make_imagefolder(tmp_path / "d", n_images=4, n_classes=2)
    m = datagen.read_marker(root)
    m["complete"] = False
    (root / datagen.MARKER).write_text(__import__("json").dumps(m))
    os.remove(datagen.image_path(root, 2, 4, 2))
    assert not datagen.is_generated(root, 4, 2)
    datagen.make_imagefolder(root, n_images=4, n_classes=2)
    assert len(_jpegs(root)) == 4 and datagen.is_generated(root, 4, 2)
