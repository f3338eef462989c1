"""No credential value in anything stoker shows: exception text, warnings
on stderr, stats(), repr(), the CLI's output (text and --json).

The rule: the secret access key and the session token never appear, whole
or in part (any 12 consecutive characters of them count). The access key id
is an identifier in AWS's model (S3 itself echoes it in InvalidAccessKeyId
errors, CloudTrail logs it), so it may appear, but never next to the secret,
which the first rule already rules out. stoker has no trace or profile
output yet (no `stoker profile`); when it does, its output belongs here.

The credentials come from the environment, and from a profile in a shared
credentials file, and go through: wrong credentials (403 from a moto that
verifies SigV4), a rejected session token, a missing key (404) with
on_error skip and raise, a server that is gone, a full epoch, and the CLI's
`stoker ls` and `stoker bench --json`, each succeeding and failing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import stoker
from conftest import _jpeg
from s3_servers import proxy_control, s3_client, start_moto, start_proxy

ACCESS_KEY_ID = "AKIASTOKERLEAKTEST77"
SECRET = "sEcReT/stokerLeakTest+9xQ7vW2mZ4pL8kR3tY6uI0oPzB"
TOKEN = "FwoGZXIvYXdzEStokerLeakTestSessionToken/Ab12Cd34Ef56Gh78+Ij90KlMnOpQrStUv"
PROFILE_SECRET = "pRoFiLeSeCrEt/stokerLeak+Q1w2E3r4T5y6U7i8O9p0AsDf"
PROFILE_TOKEN = "IQoJb3JpZ2luX2VjEStokerProfileToken/Zz98Yy76Xx54+Ww32Vv10UuTt"
SECRETS = (SECRET, TOKEN, PROFILE_SECRET, PROFILE_TOKEN)


def assert_no_secret(text: str, where: str) -> None:
    """Neither a whole secret nor any 12-character piece of one in `text`."""
    for secret in SECRETS:
        for i in range(len(secret) - 11):
            piece = secret[i:i + 12]
            assert piece not in text, f"{where} holds part of a credential ({piece!r}):\n{text[-3000:]}"


@pytest.fixture(scope="module")
def auth_moto():
    """A moto that verifies SigV4 (after the setup requests), with a bucket
    of two images and a manifest listing a third that does not exist."""
    setup = 4  # create_bucket, 2 x put_object, put_object (manifest)
    with start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": str(setup)}) as server:
        s3 = s3_client(server.endpoint)
        s3.create_bucket(Bucket="sec")
        rng = np.random.default_rng(1)
        for k in range(2):
            s3.put_object(Bucket="sec", Key=f"img/c/{k}.jpg", Body=_jpeg(rng, 32, 32))
        s3.put_object(Bucket="sec", Key="img.csv",
                      Body=b"path,label\nimg/c/0.jpg,0\nimg/c/missing.jpg,0\nimg/c/1.jpg,0\n")
        yield server


@pytest.fixture()
def env_secrets(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)


@pytest.fixture()
def profile_secrets(monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    creds = tmp_path / "credentials"
    creds.write_text(f"[leaky]\naws_access_key_id = {ACCESS_KEY_ID}\n"
                     f"aws_secret_access_key = {PROFILE_SECRET}\n"
                     f"aws_session_token = {PROFILE_TOKEN}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "leaky")


def _loader_paths(endpoint: str, capfd) -> str:
    """Everything the in-process paths show, as one text: exceptions,
    stderr and stdout (fd level: the C++ core writes warnings to fd 2),
    stats() and repr()."""
    shown = []
    kw = dict(endpoint_url=endpoint, batch_size=3, transform=stoker.transforms.imagenet_val(16))
    # A listing and a manifest read that the server refuses (403: the
    # signature cannot match, the secret is not the server's).
    for uri in ("s3://sec/img/", "s3://sec/img.csv"):
        with pytest.raises(stoker.Error) as e:
            stoker.Loader(uri, **kw)
        shown.append(str(e.value))
        shown.append(repr(e.value))
        assert "permission denied" in str(e.value) or "403" in str(e.value), str(e.value)
    out = capfd.readouterr()
    shown += [out.out, out.err]
    return "\n".join(shown)


def test_wrong_credentials_from_environment_never_shown(auth_moto, env_secrets, capfd):
    text = _loader_paths(auth_moto.endpoint, capfd)
    assert "credentials: environment" in text
    assert_no_secret(text, "error text")


def test_wrong_credentials_from_profile_never_shown(auth_moto, profile_secrets, capfd):
    text = _loader_paths(auth_moto.endpoint, capfd)
    assert "credentials: profile 'leaky'" in text
    assert_no_secret(text, "error text")


def test_epoch_skip_raise_stats_and_repr_never_show_secrets(moto, small_folder, s3, env_secrets,
                                                            capfd):
    """Against a moto that accepts any signature: a full epoch, a missing
    key skipped (logged) and raised, stats(), repr()."""
    s3.put_object(Bucket="data", Key="train/sec-missing.csv",
                  Body=b"path,label\nant/000.jpg,0\nant/nope.jpg,1\n")
    kw = dict(endpoint_url=moto.endpoint, batch_size=2, transform=stoker.transforms.imagenet_val(16))
    shown = []
    loader = stoker.Loader("s3://data/train/sec-missing.csv", on_error="skip", **kw)
    for _ in loader:
        pass
    shown += [json.dumps(loader.stats()), repr(loader), str(loader.__dict__)]
    assert loader.stats()["samples_skipped"] == 1
    loader = stoker.Loader("s3://data/train/sec-missing.csv", on_error="raise", **kw)
    with pytest.raises(stoker.Error) as e:
        for _ in loader:
            pass
    shown.append(str(e.value))
    assert "NoSuchKey" in str(e.value)
    full = stoker.Loader("s3://data/train/", **kw)
    for _ in full:
        pass
    shown += [json.dumps(full.stats()), repr(full)]
    out = capfd.readouterr()
    shown += [out.out, out.err]
    assert "skipped s3://data/train/ant/nope.jpg" in out.err  # the warning path did run
    assert_no_secret("\n".join(shown), "loader output")


def test_server_gone_never_shows_secrets(moto, small_folder, env_secrets, capfd):
    shown = []
    with start_proxy(moto.port) as proxy:
        loader = stoker.Loader("s3://data/train/", endpoint_url=proxy.endpoint, batch_size=2,
                               prefetch_batches=1, transform=stoker.transforms.imagenet_val(16),
                               read_timeout=0.5, io_timeout=1.5, on_error="skip")
        it = iter(loader)
        next(it)
        proxy_control(proxy, "gone", mode="blackhole")
        with pytest.raises(stoker.Error) as e:
            for _ in it:
                pass
        shown += [str(e.value), json.dumps(loader.stats())]
        proxy_control(proxy, "back")
        proxy_control(proxy, "gone", mode="refuse")
        with pytest.raises(stoker.Error) as e:
            stoker.Loader("s3://data/train/", endpoint_url=proxy.endpoint, io_timeout=1)
        shown.append(str(e.value))
    assert "storage unavailable" in shown[0] and "storage unavailable" in shown[-1], shown
    out = capfd.readouterr()
    shown += [out.out, out.err]
    assert_no_secret("\n".join(shown), "server-gone errors")


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "stoker.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_ls_and_bench_never_show_secrets(moto, small_folder, auth_moto):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_SESSION_TOKEN": TOKEN, "STOKER_DEBUG": ""}
    runs = [
        _cli("ls", "s3://data/train/", "--endpoint-url", moto.endpoint, env=env),
        _cli("bench", "s3://data/train/", "--endpoint-url", moto.endpoint, "--json", "--epochs", "1",
             "--batch-size", "8", "--size", "32", env=env),
        # Failing: wrong credentials (403), and with the traceback shown.
        _cli("ls", "s3://sec/img/", "--endpoint-url", auth_moto.endpoint, env=env),
        _cli("bench", "s3://sec/img/", "--endpoint-url", auth_moto.endpoint, "--json", env=env),
        _cli("ls", "s3://sec/img/", "--endpoint-url", auth_moto.endpoint,
             env={**env, "STOKER_DEBUG": "1"}),
    ]
    assert [r.returncode == 0 for r in runs] == [True, True, False, False, False], \
        [(r.returncode, r.stderr[-500:]) for r in runs]
    bench = json.loads(runs[1].stdout)
    assert "25 samples" in runs[0].stdout and bench["num_samples"] == 25
    # One epoch, then epoch 1's first 2 batches of 8 read ahead, unused.
    assert (bench["lookahead_reads"], bench["lookahead_used"]) == (16, 0), bench
    assert "403" in runs[2].stderr and "Traceback" in runs[4].stderr, runs[4].stderr[-2000:]
    for r in runs:
        assert_no_secret(r.stdout + r.stderr, f"stoker {' '.join(r.args[3:5])}")


def test_the_check_finds_whole_and_partial_leaks():
    """assert_no_secret is what every test here relies on: it must fail on
    a secret, a piece of one, and the session token, and pass on the key id."""
    assert_no_secret(f"key id {ACCESS_KEY_ID} is not secret", "text")
    for leak in (SECRET, SECRET[5:17], f"token={TOKEN[20:40]}", PROFILE_SECRET[-12:]):
        with pytest.raises(AssertionError):
            assert_no_secret(f"... {leak} ...", "text")


def test_no_cpp_code_can_print_request_headers():
    """Requests carry Authorization and X-Amz-Security-Token headers. The
    transport never turns on curl's verbose or debug output (which prints
    headers), and nothing that writes to a stream or log builds its text
    from request headers."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "src" / "stoker"
    offenders = []
    for path in root.rglob("*.cc"):
        if path.name.endswith(("_test.cc", "_bench.cc")):
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if any(s in code for s in ("CURLOPT_VERBOSE", "CURLOPT_DEBUGFUNCTION", "CURLOPT_STDERR")):
                offenders.append(f"{path}:{no}: {line.strip()}")
            if ("LogWarning" in code or "cerr" in code or "printf" in code) and \
                    any(h in code.lower() for h in ("header", "authorization", "token", "secret")):
                offenders.append(f"{path}:{no}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
