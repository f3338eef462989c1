"""stoker's whole-image decode (Decoder::DecodeFull) against Pillow.

For the files Pillow writes (JPEG: 4:4:4, 4:2:2, 4:2:0, gray, CMYK,
progressive, odd sizes; PNG: 8/16-bit, gray, gray+alpha, palette with and
without transparency, low bit depths, interlaced), stoker's pixels must
equal Pillow's ``Image.open(f).convert("RGB")`` exactly: both use
libjpeg-turbo's default ISLOW IDCT and fancy upsampling (Pillow bundles
libjpeg-turbo 3.x, stoker links the system's 2.1.5; their 8-bit output is
identical).

One documented difference: 16-bit grayscale PNG. Pillow opens it as mode
"I;16" and convert("RGB") clamps every value above 255 to 255 (the image
turns mostly white); stoker takes the high byte of each sample, as Pillow
itself does for 16-bit RGB, RGBA and gray+alpha PNGs.

EXIF orientation is ignored by both (torchvision's plain Image.open does
not apply it either).
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import stoker
from stoker._core import decode_image

SIZES = [(1, 1), (2, 3), (7, 5), (17, 13), (64, 48), (333, 251), (500, 375)]


def pattern(w, h, channels=3, seed=0):
    """Gradients, a wave and noise: every chroma sample matters."""
    rng = np.random.default_rng([seed, w, h, channels])
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [
        x * 255 / max(w - 1, 1),
        y * 255 / max(h - 1, 1),
        128 + 100 * np.sin((x + 2 * y) * 0.11),
        128 + 90 * np.cos((3 * x - y) * 0.07),
    ][:channels]
    a = np.stack(planes, -1) + rng.integers(-24, 25, (h, w, channels))
    return np.clip(a, 0, 255).astype(np.uint8)


def save(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pillow_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_same_as_pillow(data):
    got = decode_image(data)
    want = pillow_rgb(data)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.uint8
    assert got.shape == want.shape
    if not np.array_equal(got, want):
        diff = np.abs(got.astype(int) - want.astype(int))
        pytest.fail(f"{int((diff > 0).sum())} samples differ from Pillow, max {diff.max()}")


# --- JPEG -------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["444", "422", "420"])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_jpeg_rgb_matches_pillow(size, subsampling, progressive):
    img = Image.fromarray(pattern(*size))
    for quality in (75, 95):
        assert_same_as_pillow(
            save(img, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_jpeg_gray_matches_pillow(size, progressive):
    img = Image.fromarray(pattern(*size, channels=1)[..., 0])
    data = save(img, "JPEG", quality=90, progressive=progressive)
    assert_same_as_pillow(data)
    got = decode_image(data)
    assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 0], got[..., 2])


@pytest.mark.parametrize("size", [(1, 1), (17, 13), (333, 251)])
def test_jpeg_cmyk_matches_pillow(size):
    # Pillow writes Adobe (inverted) CMYK; reading, it assumes inverted CMYK
    # for every 4-component JPEG and converts with its own CMYK -> RGB.
    img = Image.fromarray(pattern(*size, channels=4), "CMYK")
    assert_same_as_pillow(save(img, "JPEG", quality=90))


def test_jpeg_optimized_and_restart_markers_match_pillow():
    img = Image.fromarray(pattern(123, 77))
    assert_same_as_pillow(save(img, "JPEG", quality=85, optimize=True))
    assert_same_as_pillow(save(img, "JPEG", quality=85, restart_marker_rows=1))


def test_jpeg_exif_orientation_is_ignored():
    img = Image.fromarray(pattern(40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW
    data = save(img, "JPEG", quality=90, exif=exif.tobytes())
    assert decode_image(data).shape == (30, 40, 3)
    assert_same_as_pillow(data)


# --- PNG --------------------------------------------------------------------


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload))


def raw_png(samples, color_type, bit_depth, interlace=0):
    """A PNG from an (h, w, c) array of big-endian samples (no filtering)."""
    h, w = samples.shape[:2]
    if interlace:  # Adam7: seven sub-images, each row prefixed by filter 0
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        for x0, y0, dx, dy in passes:
            sub = samples[y0::dy, x0::dx]
            if sub.size:
                raw += b"".join(b"\x00" + sub[r].tobytes() for r in range(sub.shape[0]))
    else:
        raw = b"".join(b"\x00" + samples[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.parametrize("size", [(1, 1), (17, 13), (333, 251)])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "P+tRNS", "1", "L;2", "L;4",
                                  "RGB-interlaced"])
def test_png_8bit_and_below_matches_pillow(size, mode):
    w, h = size
    rgba = pattern(w, h, channels=4)
    if mode in ("RGB", "RGB-interlaced"):
        data = save(Image.fromarray(rgba[..., :3]), "PNG", interlace=mode != "RGB")
    elif mode == "RGBA":
        data = save(Image.fromarray(rgba, "RGBA"), "PNG")
    elif mode == "L":
        data = save(Image.fromarray(rgba[..., 0]), "PNG")
    elif mode == "LA":
        data = save(Image.fromarray(rgba, "RGBA").convert("LA"), "PNG")
    elif mode == "P":
        data = save(Image.fromarray(rgba[..., :3]).quantize(200), "PNG")
    elif mode == "P+tRNS":
        data = save(Image.fromarray(rgba[..., :3]).quantize(16), "PNG", transparency=3)
    elif mode == "1":
        data = save(Image.fromarray(rgba[..., 0]).convert("1"), "PNG")
    else:
        data = save(Image.fromarray(rgba[..., 0]), "PNG", bits=int(mode[-1]))
    assert_same_as_pillow(data)


@pytest.mark.parametrize("channels,color_type", [(3, 2), (4, 6), (2, 4)],
                         ids=["RGB16", "RGBA16", "LA16"])
@pytest.mark.parametrize("interlace", [0, 1])
def test_png_16bit_matches_pillow(channels, color_type, interlace):
    rng = np.random.default_rng(channels)
    samples = rng.integers(0, 65536, (13, 17, channels)).astype(">u2")
    data = raw_png(samples, color_type, 16, interlace)
    assert_same_as_pillow(data)
    # Both take the high byte of each sample.
    got = decode_image(data)
    rgb = samples[..., :3] if channels >= 3 else np.repeat(samples[..., :1], 3, axis=2)
    assert np.array_equal(got, (rgb >> 8).astype(np.uint8))


def test_png_16bit_gray_takes_high_byte():
    # The one deliberate difference from Pillow (see the module docstring).
    rng = np.random.default_rng(16)
    samples = rng.integers(0, 65536, (13, 17, 1)).astype(">u2")
    data = raw_png(samples, 0, 16)
    got = decode_image(data)
    assert np.array_equal(got, np.repeat((samples >> 8).astype(np.uint8), 3, axis=2))
    pillow = pillow_rgb(data)
    assert not np.array_equal(got, pillow), "Pillow now scales 16-bit gray: drop this deviation"


# --- errors -----------------------------------------------------------------


def test_error_is_runtime_error():
    assert issubclass(stoker.Error, RuntimeError)


def test_empty_input():
    with pytest.raises(stoker.Error, match="empty file"):
        decode_image(b"")


def test_unknown_format():
    with pytest.raises(stoker.Error, match="not a JPEG or PNG image"):
        decode_image(b"GIF89a" + bytes(100))


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg(progressive):
    data = save(Image.fromarray(pattern(200, 150)), "JPEG", quality=90, progressive=progressive)
    for cut in (len(data) // 10, len(data) // 2, len(data) - 20):
        with pytest.raises(stoker.Error, match="truncated"):
            decode_image(data[:cut])


def test_truncated_png():
    data = save(Image.fromarray(pattern(200, 150)), "PNG")
    with pytest.raises(stoker.Error):
        decode_image(data[: len(data) // 2])


def test_png_named_anything_is_decoded():
    # Formats are detected from the bytes, not a file name (ImageNet has a
    # PNG called n02105855_2933.JPEG).
    data = save(Image.fromarray(pattern(30, 20)), "PNG")
    assert_same_as_pillow(data)


def test_max_pixels():
    data = save(Image.fromarray(pattern(64, 48)), "JPEG")
    assert decode_image(data, max_pixels=64 * 48).shape == (48, 64, 3)
    with pytest.raises(stoker.Error, match="64x48"):
        decode_image(data, max_pixels=64 * 48 - 1)
    png = save(Image.fromarray(pattern(64, 48)), "PNG")
    with pytest.raises(stoker.Error, match="max_pixels"):
        decode_image(png, max_pixels=100)


def test_huge_declared_size_is_refused():
    # A 16x16 JPEG whose SOF claims 50000x50000: refused from the header.
    data = bytearray(save(Image.fromarray(pattern(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 50000, 50000)
    with pytest.raises(stoker.Error, match="50000x50000"):
        decode_image(bytes(data))
