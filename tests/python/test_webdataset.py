"""WebDataset tars (docs/webdataset.md), written by the `webdataset` package
itself: the samples, labels, fields and pixels of the images they hold, in
their order; the chunk-aware order and exact resume; a folder, one tar or a
brace pattern; bad tars are errors that name the tar and the sample.
"""
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import stoker
from conftest import encode, textured

wds = pytest.importorskip("webdataset", reason="pip install webdataset (make venv does)")

N = 23


def val(size=24):
    return stoker.transforms.imagenet_val(size)


def batches(loader, epoch=0, fields=()):
    loader.set_epoch(epoch)
    out = {"image": [], "label": [], "index": [], **{f: [] for f in fields}}
    for b in loader:
        out["image"].append(b["image"].numpy())
        out["label"].extend(b["label"].tolist())
        out["index"].extend(b["index"].tolist())
        for f in fields:
            v = b[f]
            out[f].extend(v.tolist() if hasattr(v, "tolist") else v)
    out["image"] = np.concatenate(out["image"]) if out["image"] else np.zeros((0,))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """N samples as an ImageFolder-like manifest (the reference) and as
    WebDataset tars of 7 samples each, written by webdataset.ShardWriter:
    jpg or png, cls, txt and json."""
    root = tmp_path_factory.mktemp("wds")
    rng = np.random.default_rng(5)
    src = root / "src"
    src.mkdir()
    rows = ["path,label"]
    samples = []
    for i in range(N):
        arr = textured(rng, int(rng.integers(40, 160)), int(rng.integers(40, 160)))
        ext = "png" if i % 5 == 0 else "jpg"
        data = encode(arr, "PNG") if ext == "png" else encode(arr, "JPEG", quality=85,
                                                              progressive=i % 4 == 1)
        (src / f"{i:03d}.{ext}").write_bytes(data)
        label = int(i % 3)
        rows.append(f"{i:03d}.{ext},{label}")
        samples.append({"__key__": f"s{i:04d}", ext: data, "cls": label,
                        "txt": f"caption {i}", "json": {"i": i, "even": i % 2 == 0}})
    (src / "manifest.csv").write_text("\n".join(rows) + "\n")
    tars = root / "tars"
    tars.mkdir()
    with wds.ShardWriter(str(tars / "train-%06d.tar"), maxcount=7) as sink:
        for s in samples:
            sink.write(s)
    return src / "manifest.csv", tars, samples


def test_the_tars_give_the_sources_batches_exactly(data):
    manifest, tars, _ = data
    names = sorted(os.listdir(tars))
    assert names == [f"train-{k:06d}.tar" for k in range(4)]
    kw = dict(batch_size=5, transform=stoker.transforms.imagenet_train(24), shuffle=True, seed=2,
              threads=2, on_error="raise")
    ref = stoker.Loader(manifest, **kw)
    for uri in (tars, f"{tars}/train-{{000000..000003}}.tar"):
        got = stoker.Loader(uri, order="sample", **kw)
        assert got.num_samples == N
        for epoch in (0, 1):
            x, y = batches(ref, epoch), batches(got, epoch)
            assert y["index"] == x["index"] and sorted(y["index"]) == list(range(N))
            assert y["label"] == x["label"]
            np.testing.assert_array_equal(y["image"], x["image"])
    one = stoker.Loader(tars / "train-000001.tar", batch_size=7, transform=val())
    b = batches(one)
    assert b["label"] == [i % 3 for i in range(7, 14)]
    assert b["index"] == list(range(7))  # positions in the tars opened


def test_fields_keys_and_labels(data):
    _, tars, samples = data
    loader = stoker.Loader(tars, batch_size=6, transform=val(),
                           fields=["txt", "json", "__key__", "cls"])
    b = batches(loader, fields=("txt", "json", "__key__", "cls"))
    assert b["__key__"] == [s["__key__"] for s in samples]
    assert b["txt"] == [s["txt"] for s in samples]
    assert [json.loads(j) for j in b["json"]] == [s["json"] for s in samples]
    assert b["cls"] == b["label"] == [s["cls"] for s in samples]
    info = loader.shard_info
    assert info["format"] == "webdataset"
    assert [s["samples"] for s in info["shards"]] == [7, 7, 7, 2]
    assert [s["bytes"] for s in info["shards"]] == [
        max(m.offset_data + m.size for m in tarfile.open(tars / f"train-{k:06d}.tar"))
        for k in range(4)]
    assert info["fields"] == {"txt": "text", "json": "json", "cls": "int"}
    assert info["image_formats"] == {"jpeg": N - 5, "png": 5}
    # webdataset's own reader sees the same keys, in the same order.
    theirs = [s["__key__"] for s in wds.WebDataset(
        [str(tars / f"train-{k:06d}.tar") for k in range(4)], shardshuffle=False)]
    assert theirs == b["__key__"]


def test_chunk_order_and_exact_resume(data):
    _, tars, _ = data
    kw = dict(batch_size=3, shuffle=True, seed=9, transform=val(), page_bytes=8 << 10)
    full = stoker.Loader(tars, **kw)
    orders = [batches(full, e)["index"] for e in (0, 1)]
    for o in orders:
        assert sorted(o) == list(range(N))
    assert orders[0] != orders[1]
    assert batches(stoker.Loader(tars, **kw), 1)["index"] == orders[1]
    first = stoker.Loader(tars, **kw)
    first.set_epoch(1)
    it = iter(first)
    head = [next(it) for _ in range(3)]
    state = first.state_dict()
    del it, first
    resumed = stoker.Loader(tars, **kw)
    resumed.load_state_dict(state)
    tail = batches(resumed, 1)["index"]
    assert [i for b in head for i in b["index"].tolist()] + tail == orders[1]


def test_where_and_convert_to_stoker_shards(data, tmp_path):
    _, tars, samples = data
    odd = stoker.Loader(tars, batch_size=4, transform=val(), where="label == 1")
    assert batches(odd)["index"] == [i for i in range(N) if i % 3 == 1]
    dst = tmp_path / "converted"
    r = stoker.convert(tars, dst, fields=["txt", "__key__"], threads=2)
    assert r["samples_done"] == N and r["samples_skipped"] == 0
    a = batches(stoker.Loader(tars, batch_size=5, transform=val(), fields=["txt", "__key__"]),
                fields=("txt", "__key__"))
    b = batches(stoker.Loader(dst, batch_size=5, transform=val(), fields=["txt", "__key__"]),
                fields=("txt", "__key__"))
    assert a["index"] == b["index"] and a["label"] == b["label"]
    assert a["txt"] == b["txt"] and a["__key__"] == b["__key__"] == [s["__key__"] for s in samples]
    np.testing.assert_array_equal(a["image"], b["image"])


def test_a_label_field_of_another_name_loads_and_converts(tmp_path):
    img = encode(textured(np.random.default_rng(2), 40, 40), "JPEG")
    _tar(tmp_path / "ids.tar", [("a.jpg", img), ("a.id", b"7"), ("b.jpg", img), ("b.id", b"3")])
    got = batches(stoker.Loader(tmp_path / "ids.tar", batch_size=2, transform=val(),
                                label_field="id"))
    assert got["label"] == [7, 3]
    assert batches(stoker.Loader(tmp_path / "ids.tar", batch_size=2,
                                 transform=val()))["label"] == [-1, -1]  # no .cls
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "stoker.cli", "convert", str(tmp_path / "ids.tar"),
                    str(out), "--label-field", "id", "--quiet"], check=True, capture_output=True)
    assert batches(stoker.Loader(out, batch_size=2, transform=val()))["label"] == [7, 3]


def test_cli_ls_shows_the_tars(data):
    _, tars, _ = data
    out = subprocess.run([sys.executable, "-m", "stoker.cli", "ls", str(tars)], capture_output=True,
                         text=True, check=True).stdout
    assert f"{N} samples" in out
    assert "WebDataset: 4 tars" in out
    assert "train-000003.tar" in out


def _tar(path, members):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_bad_tars_are_clear_errors(data, tmp_path, record_behaviour):
    _, tars, _ = data
    jpg = (tars / "train-000000.tar").read_bytes()
    # A tar cut off inside a member.
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "a.tar").write_bytes(jpg[: len(jpg) // 2 + 100])
    with pytest.raises(stoker.Error, match=r"a\.tar: 's\d{4}\.\w+' is cut off"):
        stoker.Loader(cut, batch_size=2)
    # Duplicate keys.
    img = encode(textured(np.random.default_rng(0), 32, 32), "JPEG")
    _tar(tmp_path / "dup.tar", [("k1.jpg", img), ("k2.jpg", img), ("k1.cls", b"1")])
    with pytest.raises(stoker.Error, match=r"dup\.tar: duplicate key 'k1'"):
        stoker.Loader(tmp_path / "dup.tar", batch_size=2)
    # A label that is not an integer.
    _tar(tmp_path / "lab.tar", [("k1.jpg", img), ("k1.cls", b"cat")])
    with pytest.raises(stoker.Error, match=r"lab\.tar, sample 'k1' \.cls: 'cat' is not an integer"):
        stoker.Loader(tmp_path / "lab.tar", batch_size=2)
    # Not a tar.
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 4096)
    with pytest.raises(stoker.Error, match=r"junk\.tar: at offset 0: not a tar header"):
        stoker.Loader(tmp_path / "junk.tar", batch_size=2)
    # A missing tar of a pattern.
    with pytest.raises(stoker.Error, match=r"train-00000[4-9]\.tar: No such file"):
        stoker.Loader(f"{tars}/train-{{000002..000009}}.tar", batch_size=2)
    record_behaviour("webdataset", "a tar cut off, with duplicate keys, a bad label or a bad header",
                     "Loader() raises, naming the tar, the sample or file and the reason")


def test_a_tar_changed_after_opening_and_a_bad_image(data, tmp_path, record_behaviour):
    img = encode(textured(np.random.default_rng(1), 40, 40), "JPEG")
    _tar(tmp_path / "x.tar", [("a.jpg", img), ("a.cls", b"0"), ("b.jpg", b"not a jpeg"),
                               ("b.cls", b"1"), ("c.jpg", img), ("c.cls", b"2")])
    loader = stoker.Loader(tmp_path / "x.tar", batch_size=3, transform=val())
    b = batches(loader)
    assert b["index"] == [0, 2] and loader.stats()["samples_skipped"] == 1
    raising = stoker.Loader(tmp_path / "x.tar", batch_size=3, transform=val(), on_error="raise")
    with pytest.raises(stoker.Error, match=r"x\.tar, sample 'b'"):
        batches(raising)
    # Cut after the loader opened it: the samples past the cut are skipped.
    opened = stoker.Loader(tmp_path / "x.tar", batch_size=3, transform=val())
    data = (tmp_path / "x.tar").read_bytes()
    (tmp_path / "x.tar").write_bytes(data[:2048])
    got = batches(opened)
    assert got["index"] == [0] and opened.stats()["samples_skipped"] == 2
    record_behaviour("webdataset", "a bad image in a tar, or a tar cut after it was opened",
                     "the sample is skipped and counted (or raised), naming the tar and the key")
