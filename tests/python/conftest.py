import io
import os

import numpy as np
import pytest
from PIL import Image
import importlib.util as _ilu
from pathlib import Path as _Path

_spec = _ilu.spec_from_file_location(
    "stoker_behaviour_log", _Path(__file__).resolve().parent.parent / "behaviour_log.py")
_behaviour_log = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_behaviour_log)


def textured(rng, w, h):
    """A smooth-but-detailed RGB image (gradients, gratings and noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(0.01, 0.12, 2)
        img[..., c] = 127 + 60 * np.sin(fx * x + fy * y + rng.uniform(0, 6)) + 0.2 * (x - y)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(arr, fmt="JPEG", **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """3 classes, 37 images: JPEGs of assorted sizes, a grayscale JPEG and PNGs."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(1)
    counts = {"ant": 13, "bee": 11, "cow": 13}
    i = 0
    for cls, n in counts.items():
        os.makedirs(root / cls)
        for k in range(n):
            w, h = int(rng.integers(60, 260)), int(rng.integers(60, 260))
            arr = textured(rng, w, h)
            if i % 9 == 4:
                data, ext = encode(arr, "PNG"), "png"
            elif i % 9 == 7:
                data, ext = encode(arr[..., 0], "JPEG", quality=90), "jpg"
            else:
                data, ext = encode(arr, "JPEG", quality=90), "jpg"
            (root / cls / f"{k:03d}.{ext}").write_bytes(data)
            i += 1
    return root


@pytest.fixture()
def record_behaviour():
    """record(category, case, outcome): one row of docs/behaviour.md (see tests/behaviour_log.py)."""
    return _behaviour_log.record


# A behaviour row counts only if the test that recorded it passed.
pytest_runtest_logreport = _behaviour_log.pytest_runtest_logreport
