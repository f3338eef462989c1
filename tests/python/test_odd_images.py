"""Valid but unusual images, as a user meets them: through stoker.Loader.

Each file is listed in a manifest and loaded with on_error="raise" (any
error fails the test), once with imagenet_val and once with imagenet_train
(fast_decode off), and the sample must agree with the Pillow reference of
the same transform: Image.open(f).convert("RGB") (what torchvision's
ImageFolder loader does), then torchvision's geometry in Pillow
(test_transform_reference.py), with the crop and flip the loader drew.

Tolerance: PSNR >= 50 dB and no sample more than 8 levels off. Measured on
these files: min 53.4 dB, max difference 5 (the decoders agree exactly,
test_decode_reference.py; what remains is rounding inside the resampler).

Decisions documented here (and in docs/behaviour.md):
- EXIF orientation is ignored, as torchvision's loader ignores it (Pillow's
  Image.open does not rotate): the pixels and the labels a model was
  trained with stay the same as with the reference pipeline, and ImageNet
  training recipes assume stored orientation. The test also checks that
  applying the orientation would have been detected.
- 16-bit grayscale PNG: the high byte of each sample (Pillow's convert
  clamps I;16 to 255 instead; see test_decode_reference.py).
- Palette PNG with transparency, RGBA: alpha is dropped, not composited,
  as convert("RGB") does.
"""

import math
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageOps

import stoker
import stoker._core as core
from test_decode_reference import pattern, raw_png, save
from test_transform_reference import psnr, reference_train, reference_val

SIZE = 32
MIN_PSNR = 50.0
MAX_DIFF = 8


def arithmetic_jpeg(tmp_path, arr):
    """An arithmetic-coded JPEG from libjpeg-turbo's cjpeg (Pillow cannot
    write one); tools/install-deps.sh installs it (libjpeg-turbo-progs)."""
    cjpeg = shutil.which("cjpeg")
    if cjpeg is None:
        pytest.fail("cjpeg not found: run tools/install-deps.sh (Debian libjpeg-turbo-progs)")
    ppm = tmp_path / "src.ppm"
    Image.fromarray(arr).save(ppm)
    data = subprocess.run([cjpeg, "-arithmetic", "-quality", "90", str(ppm)],
                          capture_output=True, check=True).stdout
    assert b"\xff\xc9" in data  # SOF9: extended sequential, arithmetic coding
    return data


def exif_rotated_jpeg(arr):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return save(Image.fromarray(arr), "JPEG", quality=90, exif=exif.tobytes())


# name -> (case label for the table, bytes factory(tmp_path), file name)
CASES = {
    "gray": ("grayscale JPEG",
             lambda t: save(Image.fromarray(pattern(90, 70, 1)[..., 0]), "JPEG", quality=90), "a.jpg"),
    "cmyk": ("CMYK JPEG (Adobe)",
             lambda t: save(Image.fromarray(pattern(90, 70, 4), "CMYK"), "JPEG", quality=90), "a.jpg"),
    "progressive": ("progressive JPEG",
                    lambda t: save(Image.fromarray(pattern(90, 70)), "JPEG", quality=90,
                                   progressive=True), "a.jpg"),
    "arithmetic": ("arithmetic-coded JPEG (cjpeg -arithmetic)",
                   lambda t: arithmetic_jpeg(t, pattern(90, 70)), "a.jpg"),
    "png16": ("16-bit RGB PNG",
              lambda t: raw_png(np.random.default_rng(1).integers(0, 65536, (70, 90, 3))
                                .astype(">u2"), 2, 16), "a.png"),
    "png16a": ("16-bit RGBA PNG",
               lambda t: raw_png(np.random.default_rng(2).integers(0, 65536, (70, 90, 4))
                                 .astype(">u2"), 6, 16), "a.png"),
    "palette_trns": ("palette PNG with transparency (tRNS)",
                     lambda t: save(Image.fromarray(pattern(90, 70)).quantize(16), "PNG",
                                    transparency=3), "a.png"),
    "rgba": ("RGBA PNG", lambda t: save(Image.fromarray(pattern(90, 70, 4), "RGBA"), "PNG"),
             "a.png"),
    "one_jpeg": ("1x1 JPEG", lambda t: save(Image.fromarray(pattern(1, 1)), "JPEG"), "a.jpg"),
    "one_png": ("1x1 PNG", lambda t: save(Image.fromarray(pattern(1, 1)), "PNG"), "a.png"),
    "smaller": ("image smaller than the crop (20x12, crop 32)",
                lambda t: save(Image.fromarray(pattern(20, 12)), "JPEG", quality=90), "a.jpg"),
    "png_as_jpg": ("PNG named .jpg",
                   lambda t: save(Image.fromarray(pattern(90, 70)), "PNG"), "a.jpg"),
}


def load_one(tmp_path, path, transform):
    """The single sample of a one-line manifest, as (3, S, S) uint8."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{path.name},4\n")
    loader = stoker.Loader(manifest, batch_size=1, on_error="raise", transform=transform, seed=9)
    batches = list(loader)
    assert len(batches) == 1 and batches[0]["label"].tolist() == [4]
    assert loader.stats()["samples_skipped"] == 0
    return batches[0]["image"][0].numpy()


def check_close(got, want, what):
    diff = np.abs(got.astype(int) - want.astype(int))
    p = psnr(got, want)
    assert got.shape == want.shape, what
    assert diff.max() <= MAX_DIFF and p >= MIN_PSNR, f"{what}: max diff {diff.max()}, {p:.1f} dB"


def check_both_transforms(tmp_path, path, reference_image):
    got = load_one(tmp_path, path, stoker.transforms.imagenet_val(SIZE))
    check_close(got, reference_val(reference_image, SIZE), "val")
    got = load_one(tmp_path, path, stoker.transforms.imagenet_train(SIZE, fast_decode=False))
    # Position 0 of epoch 0, seed 9: the crop and flip the loader drew.
    x, y, w, h, flip = core.sample_params(*reference_image.size, "train", SIZE, 9, 0, 0)
    check_close(got, reference_train(reference_image, (x, y, w, h), flip, SIZE), "train")


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.parametrize("key", list(CASES))
def test_valid_image_matches_pillow(tmp_path, key, record_behaviour):
    case, make, name = CASES[key]
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    check_both_transforms(tmp_path, path, Image.open(path).convert("RGB"))
    record_behaviour("image file", case,
                     f"decoded; val and train crops agree with Pillow's convert('RGB') + "
                     f"torchvision geometry (PSNR >= {MIN_PSNR:g} dB, max diff <= {MAX_DIFF})")


def test_sixteen_bit_gray_png_takes_the_high_byte(tmp_path, record_behaviour):
    samples = np.random.default_rng(3).integers(0, 65536, (70, 90, 1)).astype(">u2")
    path = tmp_path / "a.png"
    path.write_bytes(raw_png(samples, 0, 16))
    high = Image.fromarray((samples[..., 0] >> 8).astype(np.uint8)).convert("RGB")
    check_both_transforms(tmp_path, path, high)
    # Pillow's own convert("RGB") clamps: the two must differ, or this
    # deviation is obsolete.
    assert not np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(high))
    record_behaviour("image file", "16-bit grayscale PNG",
                     "decoded to the high byte of each sample (Pillow's convert('RGB') clamps "
                     "to 255 instead); crops agree with Pillow on that image")


def test_exif_orientation_is_ignored(tmp_path, record_behaviour):
    arr = pattern(96, 48)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(exif_rotated_jpeg(arr))
    stored = Image.open(path)
    assert stored.getexif()[0x0112] == 6
    stored = stored.convert("RGB")
    check_both_transforms(tmp_path, path, stored)
    # The test can tell: the upright (exif_transpose) image is far off.
    upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    assert upright.size == (48, 96)
    got = load_one(tmp_path, path, stoker.transforms.imagenet_val(SIZE))
    assert psnr(got, reference_val(upright, SIZE)) < 30
    record_behaviour("image file", "EXIF orientation (rotate 90)",
                     "ignored, as torchvision's ImageFolder loader (PIL Image.open) ignores it: "
                     "pixels as stored, agree with Pillow without exif_transpose")
