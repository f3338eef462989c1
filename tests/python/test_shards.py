"""Shard datasets (stoker convert, docs/shard-format.md): a converted
dataset gives exactly the samples, labels, source positions, fields and
pixels of its source, crops included; bad shards and indexes are errors
that name the shard and the sample, never a wrong sample or a hang.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import stoker
from conftest import encode, textured


def train(size=32):
    return stoker.transforms.imagenet_train(size)


def batches(loader, epoch=0):
    loader.set_epoch(epoch)
    out = {"image": [], "label": [], "index": []}
    for b in loader:
        out["image"].append(b["image"].numpy())
        out["label"].extend(b["label"].tolist())
        out["index"].extend(b["index"].tolist())
    out["image"] = np.concatenate(out["image"]) if out["image"] else np.zeros((0,))
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two classes of JPEGs of every kind the converter rewrites (4:2:0,
    4:4:4, progressive, grayscale, CMYK, with EXIF) and PNGs."""
    root = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(3)
    i = 0
    for cls in ("a", "b"):
        os.makedirs(root / cls)
        for k in range(14):
            arr = textured(rng, int(rng.integers(40, 200)), int(rng.integers(40, 200)))
            kind = i % 7
            if kind == 0:
                data, ext = encode(arr, "PNG"), "png"
            elif kind == 1:
                data, ext = encode(arr, "JPEG", quality=90, progressive=True), "jpg"
            elif kind == 2:
                data, ext = encode(arr[..., 1], "JPEG", quality=80), "jpg"
            elif kind == 3:
                data, ext = encode(arr, "JPEG", quality=95, subsampling=0), "jpg"
            elif kind == 4:
                buf = Image.fromarray(arr).convert("CMYK")
                import io
                b = io.BytesIO()
                buf.save(b, "JPEG", quality=90)
                data, ext = b.getvalue(), "jpg"
            elif kind == 5:
                exif = Image.Exif()
                exif[0x0112] = 6
                data, ext = encode(arr, "JPEG", quality=85, exif=exif.tobytes()), "jpg"
            else:
                data, ext = encode(arr, "JPEG", quality=75), "jpg"
            (root / cls / f"{k:03d}.{ext}").write_bytes(data)
            i += 1
    return root


@pytest.fixture(scope="module")
def shards(source, tmp_path_factory):
    dst = tmp_path_factory.mktemp("shards")
    # Small shards, so that samples spread over several.
    r = stoker.convert(source, dst, shard_size=64 << 10, threads=2)
    return dst, r


def test_convert_summary_counts_every_sample(source, shards):
    dst, r = shards
    assert r["samples_total"] == r["samples_done"] == 28
    assert r["samples_skipped"] == 0
    assert r["jpegs_indexed"] == 24  # every JPEG; the 4 PNGs are stored as they are
    assert r["shards"] > 2
    names = sorted(os.listdir(dst))
    assert names == ["index.stoker"] + [f"shard-{k:06d}.stoker" for k in range(r["shards"])]
    assert r["bytes_out"] == sum(os.path.getsize(dst / n) for n in names)


def test_shards_give_the_sources_batches_exactly(source, shards):
    # Same order, same (seed, epoch, position): the same crops, the same
    # pixels, batch by batch, over two epochs.
    dst, _ = shards
    kw = dict(batch_size=5, transform=train(), shuffle=True, seed=4, threads=2)
    a, b = stoker.Loader(source, **kw), stoker.Loader(dst, order="sample", **kw)
    assert b.num_samples == a.num_samples == 28
    assert list(b.classes) == list(a.classes)
    for epoch in (0, 1):
        x, y = batches(a, epoch), batches(b, epoch)
        assert y["index"] == x["index"]
        assert y["label"] == x["label"]
        assert sorted(y["index"]) == list(range(28))
        np.testing.assert_array_equal(y["image"], x["image"])


def test_convert_from_shards_and_not_into_themselves(shards, tmp_path):
    dst, _ = shards
    again = tmp_path / "again"
    r = stoker.convert(dst, again, shard_size=1 << 20)
    assert r["samples_done"] == 28 and r["jpegs_indexed"] == 24
    val = stoker.transforms.imagenet_val(16)
    a = batches(stoker.Loader(dst, batch_size=7, transform=val))
    b = batches(stoker.Loader(again, batch_size=7, transform=val))
    assert b["index"] == a["index"] and b["label"] == a["label"]
    np.testing.assert_array_equal(b["image"], a["image"])
    with pytest.raises(stoker.Error, match="source's own folder"):
        stoker.convert(again, again)
    assert stoker.Loader(again, batch_size=7).num_samples == 28  # untouched


def test_chunk_order_reads_pages_in_turn_and_covers_every_sample(source, shards):
    dst, _ = shards
    kw = dict(batch_size=4, transform=stoker.transforms.imagenet_val(16), shuffle=True, seed=1)
    chunk = stoker.Loader(dst, **kw)  # the default for shards
    sample = stoker.Loader(dst, order="sample", **kw)
    orders = []
    for epoch in (0, 1, 2):
        got = batches(chunk, epoch)["index"]
        assert sorted(got) == list(range(28))
        orders.append(got)
        again = batches(stoker.Loader(dst, order="chunk", **kw), epoch)["index"]
        assert again == got  # a function of (seed, epoch, position)
    assert len({tuple(o) for o in orders}) == 3
    assert batches(sample, 0)["index"] != orders[0]
    with pytest.raises(stoker.Error, match="not a shard dataset"):
        stoker.Loader(source, order="chunk", batch_size=4)
    with pytest.raises(ValueError, match="order must be"):
        stoker.Loader(dst, order="pages", batch_size=4)


def test_shuffled_conversion_keeps_source_positions(source, tmp_path):
    r = stoker.convert(source, tmp_path / "s", shuffle_seed=9, shard_size=32 << 10)
    assert r["samples_skipped"] == 0
    val = stoker.transforms.imagenet_val(24)
    a = batches(stoker.Loader(source, batch_size=7, transform=val))
    b = batches(stoker.Loader(tmp_path / "s", batch_size=7, transform=val))
    assert b["index"] != a["index"]  # stored in another order...
    assert sorted(b["index"]) == a["index"] == list(range(28))  # ...each exactly once
    by_index = {i: (lab, img) for i, lab, img in zip(a["index"], a["label"], a["image"])}
    for i, lab, img in zip(b["index"], b["label"], b["image"]):
        assert lab == by_index[i][0]
        np.testing.assert_array_equal(img, by_index[i][1])


def test_fields_are_carried(tmp_path):
    rng = np.random.default_rng(2)
    lines = ["path,label,caption,score"]
    for i in range(9):
        (tmp_path / f"{i}.jpg").write_bytes(encode(textured(rng, 50, 40)))
        lines.append(f'{i}.jpg,{i % 3},"caption {i}, with a comma",{i * 1.5}')
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    dst = tmp_path / "s"
    stoker.convert(tmp_path / "m.csv", dst, fields=["caption", "score"])
    loader = stoker.Loader(dst, batch_size=4, transform=stoker.transforms.imagenet_val(16),
                           fields=["caption", "score"])
    got = {}
    for b in loader:
        for i, c, s in zip(b["index"].tolist(), b["caption"], b["score"].tolist()):
            got[i] = (c, s)
    assert got == {i: (f"caption {i}, with a comma", i * 1.5) for i in range(9)}
    with pytest.raises(stoker.Error, match="no field 'nope'.*caption, score"):
        stoker.Loader(dst, batch_size=4, fields=["nope"])


def test_bad_source_samples_are_skipped_or_raised(source, tmp_path, record_behaviour):
    src = tmp_path / "src"
    os.makedirs(src / "a")
    rng = np.random.default_rng(8)
    for k in range(5):
        (src / "a" / f"{k}.jpg").write_bytes(encode(textured(rng, 64, 48)))
    good = (src / "a" / "1.jpg").read_bytes()
    (src / "a" / "1.jpg").write_bytes(good[: len(good) // 2])  # truncated
    r = stoker.convert(src, tmp_path / "s")
    assert r["samples_skipped"] == 1 and r["samples_done"] == 5
    assert "1.jpg" in r["skipped_examples"][0] and "truncated" in r["skipped_examples"][0]
    idx = batches(stoker.Loader(tmp_path / "s", batch_size=8,
                                transform=stoker.transforms.imagenet_val(16)))["index"]
    assert idx == [0, 2, 3, 4]  # source positions, the bad one left out
    with pytest.raises(stoker.Error, match="1.jpg.*truncated"):
        stoker.convert(src, tmp_path / "t", on_error="raise")
    assert not (tmp_path / "t" / "index.stoker").exists()
    record_behaviour("convert", "a truncated JPEG in the source",
                     "skipped and counted in the summary, named (or raised with on_error='raise'); "
                     "batch['index'] keeps the other samples' source positions")


def _copy(dst, tmp_path, name):
    out = tmp_path / name
    out.mkdir()
    for n in os.listdir(dst):
        (out / n).write_bytes((dst / n).read_bytes())
    return out


def test_a_corrupt_record_is_skipped_naming_shard_and_sample(shards, tmp_path, record_behaviour):
    dst, _ = shards
    bad = _copy(dst, tmp_path, "bad")
    shard = bad / "shard-000001.stoker"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x40
    shard.write_bytes(bytes(data))
    loader = stoker.Loader(bad, batch_size=8, transform=stoker.transforms.imagenet_val(16))
    got = batches(loader)
    assert len(got["index"]) == 27
    assert loader.stats()["samples_skipped"] == 1
    strict = stoker.Loader(bad, batch_size=8, transform=stoker.transforms.imagenet_val(16),
                           on_error="raise")
    with pytest.raises(stoker.Error, match=r"shard-000001\.stoker, sample \d+ \(source \d+\).*checksum"):
        batches(strict)
    record_behaviour("shards", "a shard byte flipped",
                     "the sample is skipped and counted (or raised), naming the shard, the sample "
                     "and 'checksum mismatch'")


def test_truncated_and_missing_shards(shards, tmp_path, record_behaviour):
    dst, r = shards
    cut = _copy(dst, tmp_path, "cut")
    last = cut / f"shard-{r['shards'] - 1:06d}.stoker"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) - 10])
    loader = stoker.Loader(cut, batch_size=8, transform=stoker.transforms.imagenet_val(16),
                           on_error="raise")
    with pytest.raises(stoker.Error, match=rf"{last.name}, sample 27 .*shorter than its index"):
        batches(loader)
    gone = _copy(dst, tmp_path, "gone")
    os.remove(gone / "shard-000000.stoker")
    loader = stoker.Loader(gone, batch_size=8, transform=stoker.transforms.imagenet_val(16))
    got = batches(loader)
    n0 = 28 - len(got["index"])
    assert n0 > 0 and loader.stats()["samples_skipped"] == n0
    record_behaviour("shards", "a shard cut short or missing",
                     "its samples are skipped and counted (or raised), naming the shard")


def test_bad_index_is_a_clear_error(shards, tmp_path, record_behaviour):
    dst, _ = shards
    bad = _copy(dst, tmp_path, "badidx")
    idx = bad / "index.stoker"
    data = bytearray(idx.read_bytes())
    data[80] ^= 1
    idx.write_bytes(bytes(data))
    with pytest.raises(stoker.Error, match="index.stoker"):
        stoker.Loader(bad, batch_size=4)
    idx.write_bytes(bytes(data[:40]))
    with pytest.raises(stoker.Error, match="index.stoker"):
        stoker.Loader(bad, batch_size=4)
    record_behaviour("shards", "index.stoker corrupt or cut short",
                     "Loader() raises stoker.Error naming the index and the reason")


def test_interrupted_conversion_leaves_nothing_that_opens(source, tmp_path):
    dst = tmp_path / "s"
    stoker.convert(source, dst)  # a complete earlier conversion, replaced below

    def stop(p):
        raise KeyboardInterrupt

    big = tmp_path / "big"
    os.makedirs(big / "x")
    rng = np.random.default_rng(1)
    img = encode(textured(rng, 32, 32))
    for k in range(600):  # more than one chunk
        (big / "x" / f"{k:04d}.jpg").write_bytes(img)
    with pytest.raises(KeyboardInterrupt):
        stoker.convert(big, dst, progress=stop)
    assert not (dst / "index.stoker").exists()
    r = stoker.convert(big, dst)  # run again: complete
    assert r["samples_done"] == 600
    assert stoker.Loader(dst, batch_size=64).num_samples == 600


def test_cli_convert_and_ls(source, tmp_path):
    dst = tmp_path / "c"
    out = subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(source), str(dst),
                          "--json", "--shard-size", "1MB"],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["samples_done"] == 28 and r["shards"] == 1
    out = subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(source), str(dst)],
                         capture_output=True, text=True, check=True)
    assert f"{dst}: 28 samples in 1 shard" in out.stdout
    ls = subprocess.run([sys.executable, "-m", "stoker.cli", "ls", str(dst), "--json"],
                        capture_output=True, text=True, check=True)
    listing = json.loads(ls.stdout)
    assert listing["num_samples"] == 28
    assert [c["count"] for c in listing["classes"]] == [14, 14]
    sh = listing["shards"]
    assert sh["image_formats"] == {"jpeg_restart": 24, "png": 4}
    assert [s["samples"] for s in sh["shards"]] == [28]
    assert listing["total_bytes"] == sum(os.path.getsize(dst / n) for n in os.listdir(dst))
    text = subprocess.run([sys.executable, "-m", "stoker.cli", "ls", str(dst)],
                          capture_output=True, text=True, check=True).stdout
    assert "shard dataset: 1 shard," in text and "shard-000000.stoker" in text
    bad = subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(source),
                          "https://example.com/x"], capture_output=True, text=True)
    assert bad.returncode == 1 and "a local folder or an s3:// prefix" in bad.stderr


def test_where_filters_on_the_index(source, shards, record_behaviour):
    dst, _ = shards
    val = stoker.transforms.imagenet_val(16)
    every = batches(stoker.Loader(dst, batch_size=8, transform=val))
    labels = dict(zip(every["index"], every["label"]))
    b = stoker.Loader(dst, batch_size=8, transform=val, where="label in {1}")
    assert b.num_samples == 14
    got = batches(b)
    assert sorted(got["index"]) == sorted(i for i, lab in labels.items() if lab == 1)
    assert set(got["label"]) == {1}
    # A function of the columns: the same as the expression.
    fn = stoker.Loader(dst, batch_size=8, transform=val,
                       where=lambda c: (c["label"] == 0) & (c["source"] % 2 == 0))
    ex = stoker.Loader(dst, batch_size=8, transform=val,
                       where="label == 0 and source % 2 == 0")
    a, e = batches(fn)["index"], batches(ex)["index"]
    assert a == e and sorted(a) == [i for i in range(0, 14, 2)]
    # Chained comparisons, not in, and the image formats (PNGs are 3).
    png = stoker.Loader(dst, batch_size=8, transform=val, where="image_format == 3")
    assert png.num_samples == 4
    mid = stoker.Loader(dst, batch_size=8, transform=val,
                        where="4 <= source < 10 and source not in (5, 6)")
    assert sorted(batches(mid)["index"]) == [4, 7, 8, 9]
    # Shuffled in the chunk order over the samples kept, every one once.
    sh = stoker.Loader(dst, batch_size=8, transform=val, shuffle=True, seed=2,
                       where="label == 1")
    for epoch in (0, 1):
        assert sorted(batches(sh, epoch)["index"]) == sorted(got["index"])
    with pytest.raises(ValueError, match="no column 'colour'"):
        stoker.Loader(dst, where="colour == 1")
    with pytest.raises(ValueError, match="not an expression"):
        stoker.Loader(dst, where="label ==")
    with pytest.raises(ValueError, match="not allowed"):
        stoker.Loader(dst, where="__import__('os')")
    with pytest.raises(stoker.Error, match="where raised TypeError.*one bool per sample"):
        stoker.Loader(dst, where=lambda c: c["label"])
    with pytest.raises(stoker.Error, match="keeps none"):
        stoker.Loader(dst, where="label > 5")
    with pytest.raises(stoker.Error, match="not a shard dataset"):
        stoker.Loader(source, where="label == 1")
    record_behaviour("shards", "where= that names no column, is not an expression, keeps "
                     "nothing, or is given for loose files",
                     "Loader() raises ValueError or stoker.Error saying which")


def test_max_size_shrinks_larger_images(source, tmp_path):
    """--max-size 64: images over 64 px on their longer side are resized
    (as Pillow's bilinear resize, close in pixels) and stored as JPEGs with
    row tables; smaller ones stay lossless."""
    dst = tmp_path / "small"
    r = stoker.convert(source, dst, max_size=64, quality=95)
    assert r["samples_skipped"] == 0
    sizes = {}
    for p in sorted(source.rglob("*.*")):
        with Image.open(p) as im:
            sizes[p.relative_to(source).as_posix()] = im.size
    larger = sum(1 for w, h in sizes.values() if max(w, h) > 64)
    assert r["images_shrunk"] == larger > 0
    loader = stoker.Loader(dst, batch_size=28, transform=stoker.transforms.imagenet_val(48))
    small_pngs = sum(1 for k, (w, h) in sizes.items() if k.endswith(".png") and max(w, h) <= 64)
    want = {"jpeg_restart": 28 - small_pngs}
    if small_pngs:
        want["png"] = small_pngs
    assert loader.shard_info["image_formats"] == want
    # Pixels: a shrunk image against Pillow's own bilinear resize of the source.
    names = sorted(sizes)
    idx = next(i for i, k in enumerate(names) if max(sizes[k]) > 64 and k.endswith(".jpg")
               and "CMYK" not in Image.open(source / k).mode and Image.open(source / k).mode == "RGB")
    w, h = sizes[names[idx]]
    s = 64 / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    ref = np.asarray(Image.open(source / names[idx]).convert("RGB").resize((nw, nh), Image.BILINEAR),
                     dtype=np.float64)
    same = stoker.transforms.Compose([stoker.transforms.Resize((nh, nw))])  # no change in size
    one = stoker.Loader(dst, batch_size=1, transform=same, where=f"source == {idx}")
    got = next(iter(one))["image"][0].numpy().transpose(1, 2, 0).astype(np.float64)
    assert got.shape == ref.shape
    mse = np.mean((got - ref) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 30  # JPEG quality 95 of the resized pixels
    with pytest.raises(stoker.Error, match="mask field"):
        stoker.convert(source, tmp_path / "m", max_size=64, fields={"png": "mask"})


def test_resume_in_the_chunk_order_and_elastic(shards):
    """state_dict mid-epoch, restored with one rank and with two: the rest of
    the chunk-aware order exactly, nothing replayed or skipped."""
    dst, _ = shards
    kw = dict(batch_size=3, shuffle=True, seed=8, transform=train(24))
    full = stoker.Loader(dst, **kw)
    expected = batches(full, 1)
    first = stoker.Loader(dst, **kw)
    first.set_epoch(1)
    it = iter(first)
    head = [next(it) for _ in range(4)]
    state = first.state_dict()
    del it, first
    resumed = stoker.Loader(dst, **kw)
    resumed.load_state_dict(state)
    tail = batches(resumed, 1)
    got_index = [i for b in head for i in b["index"].tolist()] + tail["index"]
    assert got_index == expected["index"]
    np.testing.assert_array_equal(tail["image"], expected["image"][12:])
    # Two ranks take the rest between them, each sample once.
    rest = []
    for rank in (0, 1):
        r = stoker.Loader(dst, rank=rank, world_size=2, **kw)
        r.load_state_dict(state)
        rest += batches(r, 1)["index"]
    assert sorted(rest) == sorted(expected["index"][12:])
