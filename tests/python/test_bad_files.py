"""Bad samples: skipped and counted, or raised naming the file and the reason.

Each bad file is met the way a user meets it, through stoker.Loader: in an
ImageFolder with good files around it (on_error="skip": every good sample
still arrives, the bad one is counted by kind and logged once), and alone
after a good file in a manifest (on_error="raise": stoker.Error names the
path and the reason). File-system oddities (unreadable files and folders,
symlink loops, names that are not UTF-8) and a file declaring
50,000 x 50,000 pixels are here too. Valid but unusual images are in
test_odd_images.py, manifests in test_manifests.py.
"""
import json
import os
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from PIL import Image

import stoker
from conftest import encode, textured

# name -> (case for the table, kind counted in errors_by_kind, reason in the message)
BAD_FILES = {
    "truncated.jpg": ("truncated JPEG (first third)", "corrupt", "truncated JPEG data"),
    "header_only.jpg": ("JPEG cut after 200 bytes (headers only)", "corrupt", "truncated"),
    "empty.jpg": ("zero-byte file", "corrupt", "empty file"),
    "random.jpg": ("random bytes named .jpg", "unsupported", "not a JPEG or PNG image"),
    "text.png": ("text file named .png", "unsupported", "not a JPEG or PNG image"),
    "garbage_after_soi.jpg": ("JPEG SOI marker then random bytes", "corrupt", "invalid JPEG data"),
    "truncated.png": ("truncated PNG (first half)", "corrupt", "truncated PNG data"),
    "broken_link.jpg": ("broken symlink", "not found", "No such file or directory"),
    "loop.jpg": ("symlink to itself (ELOOP)", "I/O error", "Too many levels of symbolic links"),
    "fifo.jpg": ("FIFO named .jpg, no writer", "invalid argument", "not a regular file (a FIFO)"),
    "zero.jpg": ("symlink to /dev/zero named .jpg", "invalid argument",
                 "not a regular file (a character device)"),
}


def skip_then_raise(uri, kind, size=32):
    """Two epochs over uri, in batches of 2: on_error="skip" must count
    exactly one error, of `kind`; on_error="raise" must raise stoker.Error.
    Returns (the indices the skipping epoch delivered, batch by batch, and
    the error's message)."""
    loader = stoker.Loader(uri, batch_size=2, transform=stoker.transforms.imagenet_val(size))
    delivered = [b["index"].tolist() for b in loader]
    assert loader.stats()["errors_by_kind"] == {kind: 1}
    loader = stoker.Loader(uri, batch_size=2, on_error="raise",
                           transform=stoker.transforms.imagenet_val(size))
    with pytest.raises(stoker.Error) as info:
        for _ in loader:
            pass
    return delivered, str(info.value)


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
    png = encode(textured(rng, 200, 160), "PNG")
    data = {
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "header_only.jpg": jpeg[:200],
        "empty.jpg": b"",
        "random.jpg": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "text.png": b"this is not an image\n" * 10,
        "garbage_after_soi.jpg": b"\xff\xd8\xff" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "truncated.png": png[: len(png) // 2],
    }
    for name, content in data.items():
        (bad / name).write_bytes(content)
    os.symlink(tmp_path / "does-not-exist.jpg", bad / "broken_link.jpg")
    os.symlink("loop.jpg", bad / "loop.jpg")
    os.mkfifo(bad / "fifo.jpg")  # reading it must not wait for a writer
    os.symlink("/dev/zero", bad / "zero.jpg")  # nor read forever
    (bad / "dir.jpg").mkdir()  # a directory named like an image is not a sample
    (bad / "dir.jpg" / "inner.txt").write_text("not an image")
    # A PNG named .jpg is a valid image: decoded by its content, not its name.
    (good / "png_named.jpg").write_bytes(encode(textured(rng, 64, 64), "PNG"))
    assert sorted(list(data) + ["broken_link.jpg", "loop.jpg", "fifo.jpg", "zero.jpg"]) == \
        sorted(BAD_FILES)
    return tmp_path, sorted(BAD_FILES)


def test_skip_counts_each_bad_file(folder_with_bad_files, capfd, record_behaviour):
    root, bad = folder_with_bad_files
    loader = stoker.Loader(root, batch_size=4, shuffle=True,
                           transform=stoker.transforms.imagenet_train(32))
    # Listed: 11 good files and every bad one; not the directory dir.jpg.
    assert loader.num_samples == 11 + len(bad)
    listed = {loader.sample_uri(i) for i in range(loader.num_samples)}
    assert not any("dir.jpg" in u for u in listed)
    for epoch in range(2):
        loader.set_epoch(epoch)
        seen = []
        for batch in loader:
            seen += batch["index"].tolist()
            assert batch["image"].shape[0] == len(batch["index"]) > 0
        assert len(seen) == len(set(seen)) == 11
        assert all(loader.sample_uri(i).startswith(str(root / "good")) for i in seen)
    stats = loader.stats()
    assert stats["samples_skipped"] == 2 * len(bad)
    assert stats["samples_delivered"] == 22
    want = {}
    for name in bad:
        want[BAD_FILES[name][1]] = want.get(BAD_FILES[name][1], 0) + 2
    assert stats["errors_by_kind"] == want
    err = capfd.readouterr().err
    for name in bad:
        assert err.count(name) == 1, (name, err)  # logged once, not every epoch
    record_behaviour("file system", "directory named like an image (dir.jpg/)",
                     "not listed: a directory is not a sample (ImageFolder lists files only)")


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_skip_and_raise(folder_with_bad_files, name, record_behaviour):
    root, _ = folder_with_bad_files
    case, kind, reason = BAD_FILES[name]
    path = str(root / "bad" / name)
    manifest = root / "one.csv"
    manifest.write_text(f"path,label\ngood/0.jpg,0\n{path},1\n")
    # skip: the good sample arrives, the bad one is counted under its kind;
    # raise: stoker.Error naming the file and the reason.
    delivered, message = skip_then_raise(manifest, kind)
    assert delivered == [[0]]
    assert path in message
    assert reason.lower() in message.lower()
    assert message.startswith(kind + ": ")
    record_behaviour("image file" if kind in ("corrupt", "unsupported") else "file system", case,
                     f"skip: skipped, counted as '{kind}', path logged once; "
                     f"raise: stoker.Error '{message}'")


def test_directory_in_a_manifest(tmp_path, record_behaviour):
    rng = np.random.default_rng(1)
    (tmp_path / "a.jpg").write_bytes(encode(textured(rng, 60, 60)))
    (tmp_path / "b.jpg").mkdir()
    (tmp_path / "m.csv").write_text("path,label\na.jpg,0\nb.jpg,1\n")
    delivered, message = skip_then_raise(tmp_path / "m.csv", "invalid argument", size=16)
    assert delivered == [[0]]
    assert f"{tmp_path / 'b.jpg'}: is a directory" in message
    record_behaviour("file system", "manifest entry that is a directory",
                     f"skip: skipped, counted as 'invalid argument'; raise: stoker.Error "
                     f"'{message}'")


def test_batch_of_only_bad_files_is_not_delivered(tmp_path, record_behaviour):
    rng = np.random.default_rng(2)
    (tmp_path / "c").mkdir()
    for i in range(4):
        (tmp_path / "c" / f"a{i}.jpg").write_bytes(b"")  # positions 0-3: all bad
    for i in range(5):
        (tmp_path / "c" / f"b{i}.jpg").write_bytes(encode(textured(rng, 50, 50)))
    loader = stoker.Loader(tmp_path, batch_size=4, transform=stoker.transforms.imagenet_val(16))
    batches = [b["index"].tolist() for b in loader]
    assert batches == [[4, 5, 6, 7], [8]]
    stats = loader.stats()
    assert stats["samples_skipped"] == 4 and stats["batches_delivered"] == 2
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["position"] == 0
    record_behaviour("image file", "a whole batch of bad files",
                     "no empty batch is yielded: the loader goes on to the next batch; "
                     "all 4 counted as skipped; state_dict still at the epoch's end")


# --- 50,000 x 50,000 ----------------------------------------------------------


def forged_jpeg(side=50000):
    data = bytearray(encode(textured(np.random.default_rng(0), 16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def forged_png(side=50000):
    import zlib

    data = bytearray(encode(textured(np.random.default_rng(0), 16, 16), "PNG"))
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_huge_declared_size_is_refused(tmp_path, fmt, record_behaviour):
    data = forged_jpeg() if fmt == "jpg" else forged_png()
    assert len(data) < 2000
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / f"huge.{fmt}").write_bytes(data)
    (tmp_path / "c" / "ok.jpg").write_bytes(encode(textured(np.random.default_rng(1), 40, 40)))
    delivered, message = skip_then_raise(tmp_path, "resource exhausted")
    assert delivered == [[1]]
    assert f"huge.{fmt}" in message
    assert "50000x50000 (2500000000 pixels), more than max_pixels (178956970)" in message
    record_behaviour("image file", f"small {fmt.upper()} (< 2 KB) declaring 50,000 x 50,000",
                     "refused from the header, before any pixel buffer is allocated (peak RSS "
                     f"checked in a subprocess); skip: counted as 'resource exhausted'; raise: "
                     f"'{message}'")


_RSS_CHILD = textwrap.dedent("""
    import json, resource, sys
    import stoker
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    root = sys.argv[1]
    # Warm up on the good file alone: thread stacks, batch buffers, decoders.
    for _ in stoker.Loader(root + "/warm", batch_size=2, threads=2,
                           transform=stoker.transforms.imagenet_val(32)):
        pass
    before = peak()
    loader = stoker.Loader(root + "/huge", batch_size=2, threads=2,
                           transform=stoker.transforms.imagenet_val(32))
    for _ in range(3):
        for _ in loader:
            pass
    print(json.dumps({"before": before, "after": peak(), "stats": loader.stats()}))
""")


def test_huge_declared_size_does_not_raise_peak_rss(tmp_path, record_behaviour):
    """A subprocess loads 8 files declaring 50,000 x 50,000 (7.5 GB of RGB
    each), 3 epochs: its peak RSS grows by less than 32 MB."""
    good = encode(textured(np.random.default_rng(1), 40, 40))
    (tmp_path / "warm" / "c").mkdir(parents=True)
    (tmp_path / "warm" / "c" / "ok.jpg").write_bytes(good)
    (tmp_path / "huge" / "c").mkdir(parents=True)
    for i in range(4):
        (tmp_path / "huge" / "c" / f"h{i}.jpg").write_bytes(forged_jpeg())
        (tmp_path / "huge" / "c" / f"h{i}.png").write_bytes(forged_png())
    (tmp_path / "huge" / "c" / "ok.jpg").write_bytes(good)
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["stats"]["samples_skipped"] == 24 and r["stats"]["samples_delivered"] == 3
    grew = r["after"] - r["before"]
    assert grew < 32 << 20, f"peak RSS grew by {grew / 2**20:.1f} MB"
    record_behaviour("image file", "8 files declaring 50,000 x 50,000, 3 epochs",
                     "peak RSS of the process grows by < 32 MB (each would be 7.5 GB decoded)")


# --- permissions ----------------------------------------------------------------

# Root reads a mode-000 file anyway, so as root the loader runs in a child
# that first drops to the unprivileged user "nobody" (setgid + setuid: its
# capabilities, CAP_DAC_OVERRIDE included, go with it). The child checks
# that open() really fails before trusting the result.
_PERM_CHILD = textwrap.dedent("""
    import json, os, pwd, sys
    import stoker
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    root = sys.argv[1]
    out = {"uid": os.geteuid()}
    try:
        open(os.path.join(root, "files", "secret.jpg"), "rb")
        out["open_denied"] = False
    except PermissionError:
        out["open_denied"] = True
    t = stoker.transforms.imagenet_val(16)
    m = os.path.join(root, "files", "m.csv")
    loader = stoker.Loader(m, batch_size=2, transform=t)
    out["skip_batches"] = [b["index"].tolist() for b in loader]
    out["skip_kinds"] = loader.stats()["errors_by_kind"]
    try:
        list(stoker.Loader(m, batch_size=2, on_error="raise", transform=t))
    except stoker.Error as e:
        out["raise"] = str(e)
    try:
        stoker.Loader(os.path.join(root, "folder"), batch_size=2, transform=t)
    except stoker.Error as e:
        out["listing"] = str(e)
    print(json.dumps(out))
""")


@pytest.fixture()
def unreadable_tree():
    # Not under pytest's tmp_path: its parent is mode 700, which "nobody"
    # cannot enter at all.
    root = tempfile.mkdtemp()
    try:
        os.chmod(root, 0o755)
        rng = np.random.default_rng(4)
        files = os.path.join(root, "files")
        os.mkdir(files)
        for name in ("good.jpg", "secret.jpg"):
            with open(os.path.join(files, name), "wb") as f:
                f.write(encode(textured(rng, 40, 40)))
        os.chmod(os.path.join(files, "secret.jpg"), 0)
        with open(os.path.join(files, "m.csv"), "w") as f:
            f.write("path,label\ngood.jpg,0\nsecret.jpg,1\n")
        for cls in ("open", "locked"):
            os.makedirs(os.path.join(root, "folder", cls))
            with open(os.path.join(root, "folder", cls, "x.jpg"), "wb") as f:
                f.write(encode(textured(rng, 40, 40)))
        os.chmod(os.path.join(root, "folder", "locked"), 0)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in filenames:
                if n != "secret.jpg":
                    os.chmod(os.path.join(dirpath, n), 0o644)
        yield root
    finally:
        os.chmod(os.path.join(root, "folder", "locked"), 0o755)
        shutil.rmtree(root)


def test_unreadable_file_and_folder(unreadable_tree, record_behaviour):
    # The child gives up root for `nobody`, who may not be able to read the
    # checkout: under make test-asan, LeakSanitizer's suppressions file lives
    # there, so leak checking is off for this one child.
    env = dict(os.environ)
    if "LSAN_OPTIONS" in env or "ASAN_OPTIONS" in env:
        env.pop("LSAN_OPTIONS", None)
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    out = subprocess.run([sys.executable, "-c", _PERM_CHILD, unreadable_tree],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["uid"] != 0 and r["open_denied"], r  # the setup is honest
    secret = os.path.join(unreadable_tree, "files", "secret.jpg")
    assert r["skip_batches"] == [[0]]
    assert r["skip_kinds"] == {"permission denied": 1}
    assert r["raise"] == f"permission denied: {secret}: Permission denied"
    locked = os.path.join(unreadable_tree, "folder", "locked")
    assert r["listing"] == f"permission denied: cannot list: {locked}: Permission denied"
    how = "(run as an unprivileged user: under root, a subprocess that drops to 'nobody')"
    record_behaviour("file system", "unreadable file (mode 000)",
                     f"skip: skipped, counted as 'permission denied'; raise: stoker.Error "
                     f"'{r['raise']}' {how}")
    record_behaviour("file system", "unreadable class folder in an ImageFolder (mode 000)",
                     f"Loader() raises stoker.Error '{r['listing']}': skipping it would drop its "
                     f"samples unseen {how}")


# --- symlink loops, names that are not UTF-8 --------------------------------------


def test_directory_symlink_loop_is_listed_once(tmp_path, record_behaviour, capfd):
    rng = np.random.default_rng(5)
    (tmp_path / "c" / "sub").mkdir(parents=True)
    (tmp_path / "c" / "a.jpg").write_bytes(encode(textured(rng, 40, 40)))
    (tmp_path / "c" / "sub" / "b.jpg").write_bytes(encode(textured(rng, 40, 40)))
    os.symlink("..", tmp_path / "c" / "sub" / "up")  # c/sub/up -> c
    loader = stoker.Loader(tmp_path, batch_size=8, transform=stoker.transforms.imagenet_val(16))
    uris = [loader.sample_uri(i) for i in range(loader.num_samples)]
    assert uris == [str(tmp_path / "c" / "a.jpg"), str(tmp_path / "c" / "sub" / "b.jpg")]
    assert [b["index"].tolist() for b in loader] == [[0, 1]]
    err = capfd.readouterr().err
    assert f"not following {tmp_path / 'c' / 'sub' / 'up'}" in err
    record_behaviour("file system", "directory symlink loop (class/sub/up -> ..)",
                     "the link back to an ancestor is not followed (warning names it); every "
                     "file listed once")


def test_names_that_are_not_utf8(tmp_path, record_behaviour):
    """Linux names are bytes. Such files are loaded like any other; Python
    sees their paths as os.fsdecode() gives them (undecodable bytes as lone
    surrogates, so os.fsencode() gets the bytes back), and errors name them
    the same way."""
    root = os.fsencode(tmp_path)
    cls = root + b"/cl\xe4ss"  # Latin-1 a-umlaut
    os.mkdir(cls)
    arr = textured(np.random.default_rng(6), 48, 40)
    with open(cls + b"/caf\xe9.jpg", "wb") as f:
        f.write(encode(arr, quality=95))
    with open(cls + b"/bad\xff.jpg", "wb") as f:
        f.write(b"not an image")
    for uri in (root, os.fsdecode(root), tmp_path):
        loader = stoker.Loader(uri, batch_size=4, transform=stoker.transforms.imagenet_val(32))
        assert loader.classes == [os.fsdecode(b"cl\xe4ss")]
        uris = [loader.sample_uri(i) for i in range(loader.num_samples)]
        assert [os.fsencode(u) for u in uris] == [cls + b"/bad\xff.jpg", cls + b"/caf\xe9.jpg"]
        batches = list(loader)
        assert [b["index"].tolist() for b in batches] == [[1]]
        assert loader.stats()["errors_by_kind"] == {"unsupported": 1}
    # The pixels are the file's.
    from test_transform_reference import psnr, reference_val

    with open(cls + b"/caf\xe9.jpg", "rb") as f:
        want = reference_val(Image.open(f).convert("RGB"), 32)
    assert psnr(batches[0]["image"][0].numpy(), want) >= 50
    loader = stoker.Loader(root, batch_size=4, on_error="raise",
                           transform=stoker.transforms.imagenet_val(32))
    with pytest.raises(stoker.Error) as info:
        list(loader)
    assert os.fsdecode(cls + b"/bad\xff.jpg") in str(info.value)
    assert "not a JPEG or PNG image" in str(info.value)
    record_behaviour("file system", "file and folder names that are not UTF-8 (Latin-1 bytes)",
                     "listed and loaded; Python sees os.fsdecode() names (lone surrogates, "
                     "os.fsencode() gives the bytes back) in sample_uri, classes and errors; "
                     "Loader() takes str, bytes or a Path")


def test_image_larger_than_max_pixels(tmp_path, record_behaviour):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "big.jpg").write_bytes(encode(textured(np.random.default_rng(0), 300, 200)))
    loader = stoker.Loader(tmp_path, batch_size=1, max_pixels=300 * 200 - 1, on_error="raise",
                           transform=stoker.transforms.imagenet_val(32))
    with pytest.raises(stoker.Error, match="big.jpg") as info:
        next(iter(loader))
    assert "300x200 (60000 pixels), more than max_pixels (59999)" in str(info.value)
    ok = stoker.Loader(tmp_path, batch_size=1, max_pixels=300 * 200,
                       transform=stoker.transforms.imagenet_val(32))
    assert [b["index"].tolist() for b in ok] == [[0]]
    record_behaviour("image file", "image with more pixels than max_pixels=",
                     f"refused from the header; raise: '{info.value}'; exactly max_pixels loads")


def test_file_too_large_to_hold(tmp_path, record_behaviour):
    """An 8 TiB sparse file named .jpg (no disk used): allocating its bytes
    fails at once, and that is this sample's error."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # ASan's allocator ends the process on a request this size (seen
        # under make test-asan, even with allocator_may_return_null=1)
        # where glibc's malloc fails and new throws std::bad_alloc.
        pytest.skip("ASan's allocator does not fail an 8 TiB request the way malloc does")
    with open("/proc/sys/vm/overcommit_memory") as f:
        if f.read().strip() == "1":
            pytest.skip("overcommit_memory=1 would let the allocation succeed and fill RAM")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ok.jpg").write_bytes(encode(textured(np.random.default_rng(1), 40, 40)))
    with open(tmp_path / "c" / "sparse.jpg", "wb") as f:
        f.truncate(8 << 40)
    delivered, message = skip_then_raise(tmp_path, "resource exhausted", size=16)
    assert delivered == [[0]]
    assert message == (f"resource exhausted: {tmp_path / 'c' / 'sparse.jpg'}: file of "
                       f"{8 << 40} bytes does not fit in memory")
    record_behaviour("file system", "8 TiB sparse file named .jpg",
                     f"skip: skipped, counted as 'resource exhausted'; raise: '{message}' "
                     "(a file is read whole: there is no byte cap below what allocation refuses)")
