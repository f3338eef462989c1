"""Fixtures for the S3 integration tests: a moto server on loopback, started
and stopped here, with objects uploaded by boto3."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3_servers import CREDENTIALS, s3_client, start_moto, upload_tree  # noqa: E402

BUCKET = "data"
# Keys in the >1,000-key listing.
BIG_COUNT = 1234
BLOB_SIZE = 1 << 20

_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
             "AWS_MAX_ATTEMPTS", "AWS_CA_BUNDLE")
import importlib.util as _ilu
from pathlib import Path as _Path

_spec = _ilu.spec_from_file_location(
    "stoker_behaviour_log", _Path(__file__).resolve().parent.parent / "behaviour_log.py")
_behaviour_log = _ilu.module_from_spec(_spec)
_spec.loader.exec_module(_behaviour_log)


@pytest.fixture(scope="session", autouse=True)
def aws_env(tmp_path_factory):
    """A hermetic AWS environment: moto's test keys, no profile files."""
    saved = {k: os.environ.get(k) for k in _AWS_VARS}
    for k in _AWS_VARS:
        os.environ.pop(k, None)
    os.environ.update(CREDENTIALS)
    empty = tmp_path_factory.mktemp("aws")
    os.environ["AWS_CONFIG_FILE"] = str(empty / "config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(empty / "credentials")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto(aws_env):
    with start_moto() as server:
        yield server


@pytest.fixture(scope="session")
def s3(moto):
    client = s3_client(moto.endpoint)
    client.create_bucket(Bucket=BUCKET)
    return client


def _jpeg(rng, w, h, fmt="JPEG"):
    from PIL import Image

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 60 * np.sin(rng.uniform(0.02, 0.2) * x + rng.uniform(0.02, 0.2) * y + c)
                    for c in range(3)], axis=-1)
    img += rng.normal(0, 10, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


def blob_bytes(n: int = BLOB_SIZE) -> bytes:
    """The deterministic blob that s3_integration_test.cc checks ranges of."""
    i = np.arange(n, dtype=np.int64)
    return ((i * 7 + i // 256) % 251).astype(np.uint8).tobytes()


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory, s3):
    """A 3-class ImageFolder of 25 small images, local and at
    s3://data/train/: <class>/000.jpg ... with 005.png a PNG."""
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(3)
    for cls, n in (("ant", 9), ("bee", 8), ("cow", 8)):
        (root / cls).mkdir()
        for k in range(n):
            w, h = int(rng.integers(40, 160)), int(rng.integers(40, 160))
            if k == 5:
                (root / cls / f"{k:03d}.png").write_bytes(_jpeg(rng, w, h, "PNG"))
            else:
                (root / cls / f"{k:03d}.jpg").write_bytes(_jpeg(rng, w, h))
    upload_tree(s3, BUCKET, root, "train/")
    return root


@pytest.fixture(scope="session")
def big_prefix(s3):
    """BIG_COUNT tiny JPEGs in two classes under s3://data/big/: more than one
    ListObjectsV2 page."""
    from concurrent.futures import ThreadPoolExecutor

    data = _jpeg(np.random.default_rng(5), 24, 24)
    keys = [f"big/c{i % 2}/{i:05d}.jpg" for i in range(BIG_COUNT)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=data), keys))
    return f"s3://{BUCKET}/big/"


@pytest.fixture(scope="session")
def blob(s3):
    s3.put_object(Bucket=BUCKET, Key="ranges/blob.bin", Body=blob_bytes())
    s3.put_object(Bucket=BUCKET, Key="odd keys/a b+c%20d/\u00e9t\u00e9 (1)~.bin", Body=b"odd")
    return f"s3://{BUCKET}/ranges/blob.bin"


@pytest.fixture()
def record_behaviour():
    """record(category, case, outcome): one row of docs/behaviour.md (see tests/behaviour_log.py)."""
    return _behaviour_log.record


# A behaviour row counts only if the test that recorded it passed.
pytest_runtest_logreport = _behaviour_log.pytest_runtest_logreport
