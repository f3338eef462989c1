"""The comparisons with torchvision that the docs quote, against the real
thing: torch 2.14.1 + torchvision 0.29.1 in the peer venv (`make
test-torchvision`; the main venv's CPU torch 2.13 cannot import
torchvision, so tests/python compares with a Pillow re-implementation).

- The Pillow reference of tests/python/test_transform_reference.py is
  torchvision: RandomResizedCrop's resized_crop (+ the flip) and Resize +
  CenterCrop on the same PIL image give the same pixels, exactly.
- stoker's transform against torchvision's own output meets the PSNR bounds
  that test and README.md/docs/transforms.md quote.
- The crop distribution constants of transform_test.cc: see
  tools/crop_distribution.py (run by the same make target).
"""
import io
import sys
from pathlib import Path

import numpy as np
import pytest

torchvision = pytest.importorskip("torchvision")
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402
from torchvision.transforms import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import test_transform_reference as ref  # noqa: E402

import stoker._core as core  # noqa: E402


def test_versions_are_the_pair_the_docs_name():
    assert torch.__version__.split("+")[0] == "2.14.1"
    assert torchvision.__version__.split("+")[0] == "0.29.1"


def tv_train(full, rect, flip, size):
    x, y, w, h = (int(v) for v in rect)
    out = F.resized_crop(full, y, x, h, w, [size, size], InterpolationMode.BILINEAR,
                         antialias=True)
    if flip:
        out = F.hflip(out)
    return np.asarray(out).transpose(2, 0, 1)


def tv_val(full, size):
    resize = int(round(size / ref.CENTER_FRACTION))
    out = F.center_crop(F.resize(full, resize, InterpolationMode.BILINEAR, antialias=True), size)
    return np.asarray(out).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def images():
    """test_transform_reference's images (same generator, sizes and seeds)."""
    rng = np.random.default_rng(1234)
    out = []
    for i in range(ref.N_IMAGES):
        w, h = int(rng.integers(350, 601)), int(rng.integers(350, 601))
        data = ref.textured_jpeg(i, w, h)
        out.append((data, Image.open(io.BytesIO(data)).convert("RGB")))
    return out


def test_pillow_reference_is_torchvision(images):
    for i, (_, full) in enumerate(images):
        W, H = full.size
        for position in (i, 1000 + i):
            x, y, w, h, flip = core.sample_params(W, H, "train", ref.SIZE, 7, 3, position)
            a = ref.reference_train(full, (x, y, w, h), flip, ref.SIZE)
            b = tv_train(full, (x, y, w, h), flip, ref.SIZE)
            assert np.array_equal(a, b), (i, position, (x, y, w, h), flip)
        assert np.array_equal(ref.reference_val(full, ref.SIZE), tv_val(full, ref.SIZE)), i


@pytest.mark.parametrize("kind", ["train", "val"])
def test_stoker_against_torchvision(images, kind):
    """test_transform_reference's bounds, with torchvision's output as the
    reference."""
    scores = []
    for i, (data, full) in enumerate(images):
        W, H = full.size
        for position in (i, 1000 + i):
            x, y, w, h, flip = core.sample_params(W, H, kind, ref.SIZE, 7, 3, position)
            want = (tv_train(full, (x, y, w, h), flip, ref.SIZE) if kind == "train"
                    else tv_val(full, ref.SIZE))
            out = core.transform_image(data, kind, ref.SIZE, False, 7, 3, position, False)
            p = ref.psnr(out, want)
            scaled = ref.dct_denominator(w, h, ref.SIZE) > 1
            limit = ref.PSNR_MIN_SCALED if scaled else ref.PSNR_MIN_FULL_SCALE
            assert p >= limit, (kind, i, position, p)
            scores.append(p)
    mean = float(np.mean(scores))
    print(f"\n{kind}: PSNR vs torchvision {torchvision.__version__} over {len(scores)} "
          f"samples: mean {mean:.2f} dB, min {min(scores):.2f} dB")
    assert mean >= ref.PSNR_MIN_MEAN, mean


def test_normalised_output_matches_to_tensor_and_normalize(images):
    """docs/transforms.md: float32 output equals ToTensor + Normalize of the
    uint8 output to within 1e-6."""
    data, full = images[0]
    W, H = full.size
    u8 = core.transform_image(data, "val", ref.SIZE, False, 0, 0, 0, False)
    f32 = core.transform_image(data, "val", ref.SIZE, True, 0, 0, 0, False)
    t = F.normalize(F.to_tensor(Image.fromarray(u8.transpose(1, 2, 0))),
                    [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert np.abs(t.numpy() - f32).max() <= 1e-6
