"""Manifests (.csv with header path,label; .jsonl with keys path, label) with
odd or broken content, through stoker.Loader.

The rule: whatever is wrong with the manifest's own text (no header, a
label that is not a non-negative integer, a malformed line) fails
stoker.Loader() at once, naming the manifest, the line number and what is
wrong: a training run must not start on half a dataset or on wrong labels.
What is wrong with a listed sample (missing, unreadable, not an image) is
only known when it is read, and is a per-sample skip (or raise) like any
bad file: checking every path up front would cost a stat or a HEAD per
sample, and files can vanish later anyway. Blank lines, a UTF-8 byte order
mark, CRLF line ends and (CSV) quoted paths with commas or quotes are
accepted. Labels are not checked against a number of classes: a manifest
does not declare one.
"""
import os

import numpy as np
import pytest

import stoker
from conftest import encode, textured


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a.jpg", "b, c.jpg", 'q"uote.jpg'):
        (tmp_path / name).write_bytes(encode(textured(rng, 50, 40)))
    return tmp_path


def load(manifest, **kw):
    loader = stoker.Loader(manifest, batch_size=8, transform=stoker.transforms.imagenet_val(16),
                           **kw)
    labels = [label for b in loader for label in b["label"].tolist()]
    return loader, labels


ACCEPTED = {
    "csv: blank lines (also before the header)": (
        "m.csv", b'\npath,label\n\na.jpg,1\n\n  \n"b, c.jpg",2\n\n', [1, 2]),
    "csv: UTF-8 BOM, CRLF line ends, blank lines": (
        "m.csv", b'\xef\xbb\xbfpath,label\r\na.jpg,1\r\n\r\n"b, c.jpg",2\r\n', [1, 2]),
    "csv: quoted path with a comma and a doubled quote": (
        "m.csv", b'path,label\n"b, c.jpg",5\n"q""uote.jpg",6\n', [5, 6]),
    "csv: columns in another order, extra columns": (
        "m.csv", b"split,label,path\ntrain,3,a.jpg\n", [3]),
    "jsonl: blank lines": ("m.jsonl", b'{"path": "a.jpg", "label": 1}\n\n\n{"path": "b, c.jpg", '
                           b'"label": 2}\n', [1, 2]),
    "jsonl: UTF-8 BOM, CRLF line ends": (
        "m.jsonl", b'\xef\xbb\xbf{"path": "a.jpg", "label": 1}\r\n{"path": "q\\"uote.jpg", '
        b'"label": 2}\r\n', [1, 2]),
    "jsonl: other keys, nested values": (
        "m.jsonl", b'{"id": 7, "meta": {"k": [1, "}"]}, "label": 4, "path": "a.jpg"}\n', [4]),
    "label larger than any class (no class count in a manifest)": (
        "m.csv", b"path,label\na.jpg,1000000\n", [1000000]),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted(images, case, record_behaviour):
    name, text, want = ACCEPTED[case]
    (images / name).write_bytes(text)
    loader, labels = load(images / name, on_error="raise")
    assert labels == want
    assert loader.stats()["samples_skipped"] == 0
    record_behaviour("manifest", case, f"accepted; labels {want} as written")


REFUSED = {
    # case: (file, content, expected message after the manifest path)
    "csv: label not an integer": ("m.csv", "path,label\na.jpg,1\nb.jpg,dog\n",
                                  ":3: label 'dog' is not a non-negative integer"),
    "csv: negative label": ("m.csv", "path,label\na.jpg,-1\n",
                            ":2: label '-1' is not a non-negative integer"),
    "csv: label 1.0": ("m.csv", "path,label\na.jpg,1.0\n",
                       ":2: label '1.0' is not a non-negative integer"),
    "csv: empty label": ("m.csv", "path,label\na.jpg,\n",
                         ":2: label '' is not a non-negative integer"),
    "csv: label beyond int64": ("m.csv", "path,label\na.jpg,99999999999999999999\n",
                                ":2: label '99999999999999999999' is not a non-negative integer"),
    "csv: no header": ("m.csv", "a.jpg,1\n",
                       ":1: expected a header with columns 'path' and 'label'"),
    "csv: too few fields": ("m.csv", "path,label\na.jpg,1\nb.jpg\n",
                            ":3: expected 2 fields as in the header, got 1"),
    "csv: unquoted comma in a path": (
        "m.csv", "label,path\n2,b, c.jpg\n",
        ":2: expected 2 fields as in the header, got 3 (quote a path that contains a comma)"),
    "csv: trailing comma": ("m.csv", "path,label\na.jpg,1,\n",
                            ":2: expected 2 fields as in the header, got 3 (quote a path that "
                            "contains a comma)"),
    "csv: empty path": ("m.csv", "path,label\n,1\n", ":2: empty path"),
    "csv: unterminated quote": ("m.csv", 'path,label\n"a.jpg,1\n', ":2: unterminated quoted field"),
    "csv: empty file": ("m.csv", "", ": empty manifest"),
    "csv: header only": ("m.csv", "path,label\n\n", ": manifest lists no samples"),
    "jsonl: label as a string": ("m.jsonl", '{"path": "a.jpg", "label": "3"}\n',
                                 ":1: label '\"3\"' is not a non-negative integer"),
    "jsonl: label null": ("m.jsonl", '{"path": "a.jpg", "label": null}\n',
                          ":1: label 'null' is not a non-negative integer"),
    "jsonl: label 1.5": ("m.jsonl", '{"path": "a.jpg", "label": 1}\n{"path": "a.jpg", "label": 1.5}\n',
                         ":2: label '1.5' is not a non-negative integer"),
    "jsonl: missing label": ("m.jsonl", '{"path": "a.jpg"}\n', ':1: missing "label"'),
    "jsonl: missing path": ("m.jsonl", '{"label": 1}\n', ':1: missing "path"'),
    "jsonl: not an object": ("m.jsonl", "a.jpg 1\n", ":1: expected a JSON object"),
    "jsonl: two objects on one line": (
        "m.jsonl", '{"path": "a.jpg", "label": 1}{"path": "b.jpg", "label": 2}\n',
        ":1: unexpected text after the JSON object"),
    "jsonl: unterminated object": ("m.jsonl", '{"path": "a.jpg", "label": 1\n',
                                   ":1: expected ',' or '}'"),
    "jsonl: only blank lines": ("m.jsonl", "\n\n", ": manifest lists no samples"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_at_open_naming_the_line(images, case, record_behaviour):
    name, text, want = REFUSED[case]
    (images / name).write_text(text)
    with pytest.raises(stoker.Error) as info:
        stoker.Loader(images / name)
    message = str(info.value)
    assert message.endswith(str(images / name) + want), message
    record_behaviour("manifest", case, f"Loader() raises stoker.Error '{message}'")


def test_missing_manifest(tmp_path, record_behaviour):
    with pytest.raises(stoker.Error) as info:
        stoker.Loader(tmp_path / "nope.csv")
    assert str(info.value) == (f"not found: cannot read manifest: {tmp_path / 'nope.csv'}: "
                               "No such file or directory")
    record_behaviour("manifest", "manifest file missing", f"Loader() raises '{info.value}'")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_missing_file_is_skipped_or_raised(images, fmt, record_behaviour):
    if fmt == "csv":
        text = "path,label\na.jpg,5\n\ngone.jpg,1\n"
    else:
        text = '{"path": "a.jpg", "label": 5}\n\n{"path": "gone.jpg", "label": 1}\n'
    (images / f"m.{fmt}").write_text(text)
    loader, labels = load(images / f"m.{fmt}")
    assert loader.num_samples == 2
    assert labels == [5]
    assert loader.stats()["errors_by_kind"] == {"not found": 1}
    with pytest.raises(stoker.Error) as info:
        load(images / f"m.{fmt}", on_error="raise")
    assert str(info.value) == f"not found: {images / 'gone.jpg'}: No such file or directory"
    record_behaviour("manifest", f"{fmt}: listed file missing",
                     f"listed; when read: skip: skipped, counted as 'not found'; raise: "
                     f"stoker.Error '{info.value}'")


def test_path_that_is_not_utf8(images, record_behaviour):
    """A CSV written in Latin-1: the path's bytes are the file's name."""
    name = b"caf\xe9.jpg"
    with open(os.fsencode(images) + b"/" + name, "wb") as f:
        f.write((images / "a.jpg").read_bytes())
    (images / "m.csv").write_bytes(b"path,label\n" + name + b",2\n")
    loader, labels = load(images / "m.csv", on_error="raise")
    assert labels == [2]
    assert os.fsencode(loader.sample_uri(0)) == os.fsencode(images) + b"/" + name
    record_behaviour("manifest", "csv: path in Latin-1 bytes (not UTF-8)",
                     "the bytes are the file name: loaded; sample_uri() gives os.fsdecode() of it")
