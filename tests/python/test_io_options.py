"""The storage timeout options of stoker.Loader: validated up front, no
effect on local datasets (the S3 behaviour is in tests/integration)."""

from __future__ import annotations

import pytest

import stoker


@pytest.mark.parametrize("kw, message", [
    (dict(io_timeout=0), "io_timeout must be > 0"),
    (dict(io_timeout=-5), "io_timeout must be > 0"),
    (dict(read_timeout=-1), "connect_timeout and read_timeout must be >= 0"),
    (dict(connect_timeout=float("nan")), "connect_timeout and read_timeout must be >= 0"),
])
def test_bad_timeouts_are_refused(image_folder, kw, message):
    with pytest.raises(stoker.Error, match=message):
        stoker.Loader(image_folder, **kw)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_bad_max_attempts_is_refused(image_folder, bad):
    with pytest.raises(ValueError, match="max_attempts must be a positive int or None"):
        stoker.Loader(image_folder, max_attempts=bad)


def test_local_datasets_ignore_the_storage_timeouts(image_folder):
    kw = dict(batch_size=16, transform=stoker.transforms.imagenet_val(32))
    tight = stoker.Loader(image_folder, read_timeout=1e-3, io_timeout=1e-3, max_attempts=1, **kw)
    plain = stoker.Loader(image_folder, **kw)
    a = [b["index"].tolist() for b in tight]
    b = [b["index"].tolist() for b in plain]
    assert a == b and sum(map(len, a)) == plain.num_samples
    assert tight.stats()["timeouts"] == 0 and tight.stats()["samples_skipped"] == 0


@pytest.mark.parametrize("kw, exc, message", [
    (dict(min_rate=-1), ValueError, "min_rate must be >= 0 bytes/s"),
    (dict(min_rate=float("nan")), ValueError, "min_rate must be >= 0 bytes/s"),
    (dict(min_rate=100, min_rate_window=0), ValueError, "min_rate_window > 0"),
    (dict(verify="/etc/ssl/ca.pem"), TypeError, "a CA file goes in ca_bundle="),
    (dict(ca_bundle="/nonexistent/ca.pem"), ValueError, "'/nonexistent/ca.pem' is not a readable file"),
])
def test_bad_tls_and_rate_options_are_refused(image_folder, kw, exc, message):
    with pytest.raises(exc, match=message):
        stoker.Loader(image_folder, **kw)
