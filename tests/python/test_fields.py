"""Fields of a sample besides its image, label and index (fields=):
manifest columns (CSV) and keys (JSON Lines), and files beside a folder's
images with the same name up to the first dot (WebDataset's convention).

Each test checks the exact values, in batch order, against what was
written; bad or missing fields are skipped and counted, or raised, naming
the file and the field.
"""
import json

import numpy as np
import pytest
import torch

import stoker
from conftest import encode, textured

N_PER_CLASS = 5


def val():
    return stoker.transforms.imagenet_val(16)


def collect(loader):
    """Every batch's fields, concatenated in batch order."""
    out = {}
    for b in loader:
        for k, v in b.items():
            if k == "image":
                continue
            if isinstance(v, list):
                out.setdefault(k, []).extend(v)
            else:
                out.setdefault(k, []).extend(v.tolist())
    return out


@pytest.fixture()
def folder(tmp_path):
    """Two classes of JPEGs; beside each x{i}.jpg: .txt, .json, .npy (shapes
    differ by sample), .cls and .seg.npy (same shape)."""
    rng = np.random.default_rng(5)
    expect = {"txt": [], "json": [], "npy": [], "cls": [], "seg.npy": [], "index": []}
    for c in ("cat", "dog"):
        d = tmp_path / c
        d.mkdir()
        for i in range(N_PER_CLASS):
            (d / f"x{i}.jpg").write_bytes(encode(textured(rng, 40 + i, 30)))
            text = f"a {c} number {i} \u00e9\u4e2d"
            (d / f"x{i}.txt").write_text(text, encoding="utf-8")
            doc = {"class": c, "i": i, "tags": [i, None, True]}
            (d / f"x{i}.json").write_text(json.dumps(doc))
            arr = rng.normal(size=(i + 1, 2)).astype(np.float32)
            np.save(d / f"x{i}.npy", arr)
            (d / f"x{i}.cls").write_text(f" {i * 7}\n")
            seg = rng.integers(0, 255, size=(3, 4), dtype=np.uint8)
            np.save(d / f"x{i}.seg.npy", seg)
            expect["txt"].append(text)
            expect["json"].append(doc)
            expect["npy"].append(arr)
            expect["cls"].append(i * 7)
            expect["seg.npy"].append(seg)
    return tmp_path, expect


def test_folder_sibling_files(folder):
    root, expect = folder
    loader = stoker.Loader(root, batch_size=4, transform=val(), on_error="raise",
                           fields=["txt", "json", "npy", "cls", "seg.npy"])
    assert loader.num_samples == 2 * N_PER_CLASS  # a group is one sample, not six
    got = {k: [] for k in expect}
    labels = []
    for b in loader:
        n = len(b["label"])
        assert isinstance(b["txt"], list) and all(isinstance(t, str) for t in b["txt"])
        assert isinstance(b["json"], list) and all(isinstance(t, str) for t in b["json"])
        # .npy arrays of different shapes: one per sample; of one shape: stacked.
        assert isinstance(b["npy"], list) or b["npy"].shape[0] == n
        assert tuple(b["seg.npy"].shape) == (n, 3, 4) and str(b["seg.npy"].dtype) == "torch.uint8"
        assert str(b["cls"].dtype) == "torch.int64"
        got["txt"] += b["txt"]
        got["json"] += [json.loads(t) for t in b["json"]]
        got["npy"] += list(b["npy"])
        got["cls"] += b["cls"].tolist()
        got["seg.npy"] += list(b["seg.npy"])
        labels += b["label"].tolist()
    assert got["txt"] == expect["txt"]
    assert got["json"] == expect["json"]
    assert got["cls"] == expect["cls"]
    for a, e in zip(got["npy"], expect["npy"]):
        np.testing.assert_array_equal(np.asarray(a), e)
    for a, e in zip(got["seg.npy"], expect["seg.npy"]):
        np.testing.assert_array_equal(np.asarray(a), e)
    assert labels == [0] * N_PER_CLASS + [1] * N_PER_CLASS


def test_fields_follow_shuffled_order_and_threads(folder):
    """Each sample's fields travel with it: the same (index -> field) pairs
    for any thread count, shuffled."""
    root, expect = folder
    seen = []
    for threads in (1, 3):
        loader = stoker.Loader(root, batch_size=3, transform=val(), shuffle=True, seed=9,
                               threads=threads, fields=["cls", "txt"])
        pairs = []
        for b in loader:
            pairs += list(zip(b["index"].tolist(), b["cls"].tolist(), b["txt"]))
        assert sorted(i for i, _, _ in pairs) == list(range(2 * N_PER_CLASS))
        for i, cls, txt in pairs:
            assert cls == expect["cls"][i] and txt == expect["txt"][i]
        seen.append(pairs)
    assert seen[0] == seen[1]


def test_fields_not_asked_for_are_not_read(folder):
    root, _ = folder
    plain = stoker.Loader(root, batch_size=4, transform=val())
    # Without fields= a folder lists images only, as ImageFolder does.
    assert plain.num_samples == 2 * N_PER_CLASS
    for _ in plain:
        pass
    one = stoker.Loader(root, batch_size=4, transform=val(), fields=["cls"])
    for _ in one:
        pass
    assert plain.stats()["requests"] == 2 * N_PER_CLASS
    assert one.stats()["requests"] == 2 * 2 * N_PER_CLASS  # image + .cls, nothing else


def test_png_beside_a_jpeg_is_a_field_not_a_sample(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.jpg").write_bytes(encode(textured(rng, 32, 32)))
    (tmp_path / "c" / "x.png").write_bytes(encode(textured(rng, 32, 32), "PNG"))
    (tmp_path / "c" / "x.txt").write_text("only one sample")
    plain = stoker.Loader(tmp_path, transform=val())
    assert plain.num_samples == 2  # both images, as ImageFolder lists them
    grouped = stoker.Loader(tmp_path, transform=val(), fields={"txt": "text", "png": "bytes"})
    assert grouped.num_samples == 1
    assert grouped.sample_uri(0).endswith("x.jpg")
    b = next(iter(grouped))
    assert b["txt"] == ["only one sample"]
    assert b["png"] == [(tmp_path / "c" / "x.png").read_bytes()]


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(6):
        (tmp_path / f"i{i}.jpg").write_bytes(encode(textured(rng, 30, 30)))
    return tmp_path


def test_csv_columns(images, record_behaviour):
    rows = [("i0.jpg", 0, 'a "quoted", caption', "1", "0.5", "x"),
            ("i1.jpg", 1, "second", "-2", "3", "y"),
            ("i2.jpg", 2, "", "3", "1e3", "z")]
    text = "path,label,caption,n,score,tag\n" + "".join(
        f'{p},{l},"{c.replace(chr(34), chr(34) * 2)}",{n},{s},{t}\n' for p, l, c, n, s, t in rows)
    (images / "m.csv").write_text(text)
    loader = stoker.Loader(images / "m.csv", batch_size=2, transform=val(), on_error="raise",
                           fields=["caption", "n", "score", ("tag", "text")])
    got = collect(loader)
    assert got["caption"] == [r[2] for r in rows]
    assert got["n"] == [1, -2, 3]  # every value an integer: int64
    assert got["score"] == [0.5, 3.0, 1000.0]  # numbers: float64
    assert got["tag"] == ["x", "y", "z"]
    record_behaviour("fields", "CSV extra columns", "caption -> list of str (quoted commas kept), "
                     "integer column -> int64 tensor, number column -> float64 tensor")


def test_csv_file_columns_are_paths(images):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 9, size=(2, 2)).astype(np.int16) for _ in range(3)]
    for i, a in enumerate(arrays):
        np.save(images / f"a{i}.npy", a)
        (images / f"b{i}.bin").write_bytes(bytes([i]) * (i + 1))
    text = "path,label,arr,blob\n" + "".join(f"i{i}.jpg,{i},a{i}.npy,b{i}.bin\n" for i in range(3))
    (images / "m.csv").write_text(text)
    loader = stoker.Loader(images / "m.csv", batch_size=3, transform=val(), on_error="raise",
                           fields={"arr": "npy", "blob": "bytes"})
    b = next(iter(loader))
    assert tuple(b["arr"].shape) == (3, 2, 2) and str(b["arr"].dtype) == "torch.int16"
    np.testing.assert_array_equal(b["arr"].numpy(), np.stack(arrays))
    assert b["blob"] == [bytes([i]) * (i + 1) for i in range(3)]


def test_jsonl_keys(images):
    lines = [{"path": "i0.jpg", "label": 0, "caption": "zero", "w": 1, "meta": {"k": [1, 2]}},
             {"path": "i1.jpg", "label": 1, "caption": "un \u00e9", "w": 2.5, "meta": None},
             {"path": "i2.jpg", "label": 2, "caption": "deux", "w": -3, "meta": [True]}]
    (images / "m.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    loader = stoker.Loader(images / "m.jsonl", batch_size=2, transform=val(), on_error="skip",
                           fields=["caption", "w", "meta"])
    got = collect(loader)
    # meta is null on line 2: that sample lacks the field and is skipped.
    assert got["index"] == [0, 2]
    assert got["caption"] == ["zero", "deux"]
    assert got["w"] == [1.0, -3.0]  # 1, 2.5, -3: numbers, not all integers
    assert [json.loads(m) for m in got["meta"]] == [{"k": [1, 2]}, [True]]
    assert loader.stats()["samples_skipped"] == 1


def test_explicit_kind_refused_at_open_naming_the_line(images, record_behaviour):
    (images / "m.csv").write_text("path,label,n\ni0.jpg,0,1\ni1.jpg,1,two\n")
    with pytest.raises(stoker.Error) as info:
        stoker.Loader(images / "m.csv", fields={"n": "int"})
    assert str(info.value).endswith(f"{images / 'm.csv'}:3: field 'n' (int): 'two' is not an integer")
    record_behaviour("fields", "manifest: a value not of the field's kind (fields={'n': 'int'})",
                     f"Loader() raises stoker.Error '{info.value}'")


def test_unknown_column_refused_at_open(images, record_behaviour):
    (images / "m.csv").write_text("path,label,caption\ni0.jpg,0,a\n")
    with pytest.raises(stoker.Error) as info:
        stoker.Loader(images / "m.csv", fields=["captoin"])
    assert "no column 'captoin' for field 'captoin' (columns: path, label, caption)" in str(info.value)
    (images / "m.jsonl").write_text('{"path": "i0.jpg", "label": 0}\n')
    with pytest.raises(stoker.Error) as info2:
        stoker.Loader(images / "m.jsonl", fields=["caption"])
    assert "no line has the key 'caption'" in str(info2.value)
    record_behaviour("fields", "manifest lacks a requested field's column or key",
                     f"Loader() raises stoker.Error '{info.value}'")


@pytest.mark.parametrize("bad", ["missing", "json", "npy", "cls", "utf8"])
@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_bad_sibling_is_skipped_or_raised_naming_file_and_field(folder, bad, on_error,
                                                               record_behaviour):
    root, expect = folder
    target = root / "dog" / "x2"
    field = {"missing": "txt", "json": "json", "npy": "npy", "cls": "cls", "utf8": "txt"}[bad]
    f = target.with_suffix("." + field)
    if bad == "missing":
        f.unlink()
        reason = "field 'txt' is missing (no file of that name beside the sample)"
    elif bad == "json":
        f.write_text('{"a": 1,}')
        reason = f"field 'json' ({f}): not valid JSON: expected a key at byte 8"
    elif bad == "npy":
        f.write_bytes(f.read_bytes()[:-3])
        reason = f"field 'npy' ({f}): npy: the shape needs 24 bytes of data, the file has 21"
    elif bad == "cls":
        f.write_text("seven")
        reason = f"field 'cls' ({f}): 'seven' is not an integer"
    else:
        f.write_bytes(b"caf\xe9")
        reason = f"field 'txt' ({f}): text is not valid UTF-8"
    loader = stoker.Loader(root, batch_size=4, transform=val(), on_error=on_error,
                           fields=["txt", "json", "npy", "cls"])
    bad_index = N_PER_CLASS + 2
    if on_error == "raise":
        with pytest.raises(stoker.Error) as info:
            for _ in loader:
                pass
        message = str(info.value)
        assert message.endswith(f"{target}.jpg: {reason}"), message
        outcome = f"next() raises stoker.Error '...{reason}'"
    else:
        got = collect(loader)
        assert got["index"] == [i for i in range(2 * N_PER_CLASS) if i != bad_index]
        assert got["cls"] == [c for i, c in enumerate(expect["cls"]) if i != bad_index]
        assert loader.stats()["samples_skipped"] == 1
        outcome = "skipped and counted; the rest of the batch delivered"
    record_behaviour("fields", f"sibling field: {bad} (on_error={on_error})", outcome)


def test_field_arguments_checked(images):
    (images / "m.csv").write_text("path,label,c\ni0.jpg,0,a\n")
    with pytest.raises(TypeError):
        stoker.Loader(images / "m.csv", fields="c")
    with pytest.raises(ValueError, match="kind must be one of"):
        stoker.Loader(images / "m.csv", fields={"c": "string"})
    with pytest.raises(stoker.Error, match="field 'label': every batch has it already"):
        stoker.Loader(images / "m.csv", fields=["label"])
    with pytest.raises(stoker.Error, match="named twice"):
        stoker.Loader(images / "m.csv", fields=["c", ("c", "text")])


def test_clip_style_example_reads_images_and_captions(tmp_path):
    """examples/python/clip_style.py end to end: its manifest's captions
    reach the training step as a list of str beside the image tensor."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "examples" / "python" / "clip_style.py"
    manifest = subprocess.run([sys.executable, str(script), "--generate", str(tmp_path),
                               "--count", "48"], check=True, capture_output=True,
                              text=True).stdout.strip()
    out = subprocess.run([sys.executable, str(script), "--manifest", manifest, "--steps", "10",
                          "--batch-size", "16"], check=True, capture_output=True, text=True).stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("step 10: loss ") and "e.g. 'a " in last, out
    loader = stoker.Loader(manifest, batch_size=48, fields=["caption"])
    b = next(iter(loader))
    rows = Path(manifest).read_text().splitlines()[1:]
    assert b["caption"] == [r.split(",", 2)[2].strip('"') for r in rows]


def _block_pairs(root, n, rng):
    """Images (lossless PNG) whose red channel is 40 x the class of 8 x 8
    blocks, and their masks (palette PNGs, as Pillow writes them: 2 bits a
    pixel for 4 classes) holding the classes."""
    from PIL import Image
    (root / "c").mkdir()
    for i in range(n):
        h, w = int(rng.integers(60, 90)), int(rng.integers(60, 90))
        classes = np.kron(rng.integers(0, 4, size=(h // 8 + 1, w // 8 + 1)),
                          np.ones((8, 8), np.int64))[:h, :w].astype(np.uint8)
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = classes * 40
        img[..., 1] = 200
        Image.fromarray(img).save(root / "c" / f"x{i:02d}.png")
        m = Image.fromarray(classes, mode="P")
        m.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
        m.save(root / "c" / f"x{i:02d}.seg.png")


def test_mask_gets_the_image_crop_and_flips(tmp_path, record_behaviour):
    """Segmentation: a mask field takes its image's crop box and flips. With
    crops and flips only, the image's red channel / 40 equals the mask pixel
    for pixel; through RandomResizedCrop (image bilinear, mask nearest) they
    agree away from block edges."""
    from stoker import transforms as T
    _block_pairs(tmp_path, 12, np.random.default_rng(6))
    exact = T.Compose([T.RandomCrop(48), T.RandomHorizontalFlip(), T.RandomVerticalFlip()])
    loader = stoker.Loader(tmp_path, batch_size=5, transform=exact, shuffle=True, seed=1,
                           on_error="raise", fields={"seg.png": "mask"})
    assert loader.num_samples == 12
    batches = 0
    for b in loader:
        image, mask = b["image"], b["seg.png"]
        assert tuple(mask.shape) == (len(b["index"]), 1, 48, 48) and mask.dtype == torch.uint8
        assert torch.equal(image[:, 0:1] // 40, mask)
        batches += 1
    assert batches == 3
    resized = T.Compose([T.RandomResizedCrop(40, scale=(0.3, 1.0)), T.RandomHorizontalFlip()])
    loader = stoker.Loader(tmp_path, batch_size=12, transform=resized, seed=2, on_error="raise",
                           fields={"seg.png": "mask"})
    b = next(iter(loader))
    agree = ((b["image"][:, 0:1].float() / 40).round() == b["seg.png"].float()).float().mean()
    assert agree > 0.9, agree
    record_behaviour("fields", "segmentation mask beside its image (fields={'seg.png': 'mask'})",
                     "the mask gets the image's crop and flips (nearest neighbour): equal to the "
                     "image's classes pixel for pixel under crops and flips")


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_mask_of_another_size_is_skipped_or_raised(tmp_path, on_error, record_behaviour):
    from PIL import Image
    _block_pairs(tmp_path, 4, np.random.default_rng(7))
    bad = tmp_path / "c" / "x02.seg.png"
    Image.fromarray(np.zeros((10, 11), np.uint8), mode="L").save(bad)
    with Image.open(tmp_path / "c" / "x02.png") as im:
        w, h = im.size
    loader = stoker.Loader(tmp_path, batch_size=4, transform=stoker.transforms.imagenet_val(32),
                           on_error=on_error, fields={"seg.png": "mask"})
    reason = f"field 'seg.png' ({bad}): mask is 11x10, image is {w}x{h}"
    if on_error == "raise":
        with pytest.raises(stoker.Error) as info:
            list(loader)
        assert str(info.value).endswith(f"{tmp_path / 'c' / 'x02.png'}: {reason}"), str(info.value)
        outcome = f"next() raises stoker.Error '...{reason}'"
    else:
        got = [i for b in loader for i in b["index"].tolist()]
        assert got == [0, 1, 3]
        assert loader.stats()["samples_skipped"] == 1
        outcome = "skipped and counted"
    record_behaviour("fields", f"mask of another size than its image (on_error={on_error})",
                     outcome)


def test_segmentation_example_trains(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "examples" / "python" / "segmentation.py"
    subprocess.run([sys.executable, str(script), "--generate", str(tmp_path), "--count", "24"],
                   check=True, capture_output=True)
    out = subprocess.run([sys.executable, str(script), "--data", str(tmp_path), "--steps", "10",
                          "--batch-size", "8"], check=True, capture_output=True, text=True)
    assert "skipped" not in out.stderr, out.stderr  # every mask read
    assert out.stdout.strip().splitlines()[-1].startswith("step 10: loss "), out.stdout
