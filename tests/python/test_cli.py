"""The `stoker` command (ls, bench, gen, demo), the measuring helpers, and
the PyTorch DataLoader peer and comparison (bench/). Tiny data and one
epoch: these check what is reported, not how fast."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stoker import _measure as measure
from stoker import datagen
from stoker.cli import demo, main

# The peer and the comparison are benchmark code in the checkout's bench/,
# not in the installed package.
REPO = Path(__file__).resolve().parents[2]
TORCH_DATALOADER = REPO / "bench" / "peers" / "torch_dataloader.py"

N, K = 40, 4
BENCH_KEYS = {"images_per_s", "cpu_s_per_image", "peak_rss_bytes", "stall_fraction",
              "bytes_read", "requests", "errors_skipped", "epochs", "stages", "rss_after_epoch"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return datagen.make_imagefolder(tmp_path_factory.mktemp("cli") / "ds", n_images=N, n_classes=K)


def _one_json(out: str):
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out  # --json: exactly one object on stdout
    return json.loads(lines[0])


def _total_bytes(root):
    return sum(p.stat().st_size for p in root.rglob("*.jpg"))


def test_ls(folder, capsys):
    assert main(["ls", str(folder), "--json"]) == 0
    r = _one_json(capsys.readouterr().out)
    assert r["num_samples"] == N and r["num_classes"] == K
    assert [c["name"] for c in r["classes"]] == [f"class_{c:02d}" for c in range(K)]
    assert [c["count"] for c in r["classes"]] == [N // K] * K
    assert r["total_bytes"] == _total_bytes(folder)

    assert main(["ls", str(folder)]) == 0
    text = capsys.readouterr().out
    assert f"{N} samples, {K} classes" in text and "class_03" in text


def test_bench_json(folder, capsys):
    assert main(["bench", str(folder), "--json", "--epochs", "1", "--batch-size", "16",
                 "--threads", "2"]) == 0
    captured = capsys.readouterr()
    r = _one_json(captured.out)
    assert BENCH_KEYS <= r.keys()
    assert r["images"] == N and len(r["epochs"]) == 1 and r["epochs"][0]["images"] == N
    assert r["num_samples"] == N
    assert r["errors_skipped"] == 0
    assert r["images_per_s"] > 0 and r["cpu_s_per_image"] > 0
    assert 0.0 <= r["stall_fraction"] <= 1.0
    assert r["requests"] >= N and r["bytes_read"] >= _total_bytes(folder)
    assert r["lookahead_reads"] == 0  # local files are never read ahead
    assert r["peak_rss_bytes"] >= max(r["rss_after_epoch"]) > 0
    assert {s["name"] for s in r["stages"]}, r["stages"]
    assert "epoch 0" in captured.err  # progress goes to stderr


def test_bench_text_and_options(folder, capsys):
    assert main(["bench", str(folder), "--epochs", "2", "--transform", "val", "--normalize",
                 "--size", "64", "--batch-size", "7", "--no-shuffle"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "stage" in out and "val 64 normalize" in out


def test_bench_bad_input(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing"), "--json", "--epochs", "1"]) == 1
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", str(tmp_path), "--threads", "zero"])


def test_gen(tmp_path, capsys):
    root = tmp_path / "g"
    assert main(["gen", str(root), "--images", "6", "--classes", "3", "--seed", "2"]) == 0
    assert len(list(root.rglob("*.jpg"))) == 6
    assert main(["gen", str(root), "--images", "6", "--classes", "3", "--seed", "2"]) == 0
    assert "already generated" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err


# ---------------------------------------------------------------- the peer


def _peer(folder, *extra):
    pytest.importorskip("torch")
    cmd = [sys.executable, str(TORCH_DATALOADER), str(folder), "--json", "--epochs", "1",
           "--batch-size", "8", "--workers", "2", "--verify", *extra]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return _one_json(p.stdout)


def test_peer_pillow_fallback_covers_every_image(folder):
    # --force-pillow: the re-implementation of torchvision's ImageFolder and
    # transforms, whatever is installed. Run by path, as the demo does.
    r = _peer(folder, "--force-pillow")
    assert r["peer"] == "torch DataLoader + Pillow re-implementation of torchvision transforms"
    assert r["images"] == N and r["num_samples"] == N and r["num_classes"] == K
    v = r["verify"]
    assert v["distinct_indices_per_epoch"] == [N]
    assert v["label_mismatches"] == 0
    assert v["image_shape"] == [3, 224, 224] and v["image_dtype"] == "torch.float32"
    assert r["images_per_s"] > 0 and r["cpu_s_per_image"] > 0
    # main process + 2 workers, all counted
    assert r["peak_processes"] >= 3 and r["peak_rss_bytes"] > 0


def test_peer_matches_torchvision_when_present(folder):
    tv = pytest.importorskip("torchvision")
    sys.path.insert(0, str(TORCH_DATALOADER.parent))
    try:
        import torch
        import torch_dataloader as peer
    finally:
        sys.path.pop(0)
    a, _, _ = peer.make_dataset(str(folder))
    b, _, _ = peer.make_dataset(str(folder), force_pillow=True)
    assert a.samples == b.samples
    for i in (0, 7, 33):
        torch.manual_seed(i)
        x, _ = a[i]
        torch.manual_seed(i)
        y, _ = b[i]
        assert torch.equal(x, y), tv.__version__


# ---------------------------------------------------------------- the demo


def test_demo_json(folder, capsys, monkeypatch):
    # From inside a checkout (as `make demo` runs it) the demo finds the
    # comparison in bench/ and runs the peer beside stoker.
    pytest.importorskip("torch")
    monkeypatch.chdir(REPO / "tests")
    assert demo.find_comparison() == REPO / "bench" / "demo_compare.py"
    assert main(["demo", "--json", "--data", str(folder), "--epochs", "1", "--threads", "2",
                 "--batch-size", "16", "--peer-python", sys.executable]) == 0
    r = _one_json(capsys.readouterr().out)
    s = r["stoker"]["2"]
    assert s["images"] == N and BENCH_KEYS <= s.keys()
    assert r["peer"]["images"] == N, r["peer"]
    assert set(r["ratios"]) >= {"speedup", "cpu_ratio", "rss_ratio"}
    assert all(v > 0 for v in r["ratios"].values() if v is not None)
    assert r["dataset"]["files"] >= N


def test_demo_alone_outside_a_checkout(folder, tmp_path, capsys, monkeypatch):
    # The installed command, run where no checkout is: stoker alone, no peer,
    # and it says where the comparison is.
    monkeypatch.chdir(tmp_path)
    assert demo.find_comparison() is None
    import stoker
    installed = Path(stoker.__file__).parent
    assert not (installed / "peers").exists() and not list(installed.rglob("*compare*"))
    assert main(["demo", "--json", "--data", str(folder), "--epochs", "1", "--threads", "1,2",
                 "--batch-size", "16"]) == 0
    captured = capsys.readouterr()
    r = _one_json(captured.out)
    assert set(r["stoker"]) == {"1", "2"}
    assert all(s["images"] == N for s in r["stoker"].values())
    assert r["peer"] is None and r["ratios"] is None and "more_peers" not in r
    assert "runs from a stoker checkout" in captured.err

    assert main(["demo", "--data", str(folder), "--epochs", "1", "--threads", "2",
                 "--batch-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "stoker, threads=2" in text and "PyTorch" not in text

    # Asking for a peer there is an error that says why.
    assert main(["demo", "--data", str(folder), "--peer-python", sys.executable]) == 1
    assert "need a stoker checkout" in capsys.readouterr().err


def test_demo_table_formats():
    demo_compare = demo.load_comparison(REPO / "bench" / "demo_compare.py")
    run = {"images_per_s": 1500.0, "cpu_s_per_image": 0.0012, "peak_rss_bytes": 300e6,
           "peak_pss_bytes": 290e6}
    peer = dict(run, images_per_s=300.0, cpu_s_per_image=0.006, peak_rss_bytes=1.2e9,
                peak_pss_bytes=600e6, torchvision="0.29.1", peer="torch DataLoader + torchvision")
    result = {"dataset": {"root": "d", "files": 2000, "mean_file_bytes": 118e3},
              "config": {"epochs": 3, "batch_size": 64, "workers": 2},
              "machine": {"nproc": 2, "cpu_model": "cpu"},
              "stoker": {"auto": run}, "peer": peer, "ratios_vs": "stoker threads=auto"}
    result["ratios"] = demo_compare.ratios(run, peer)
    assert result["ratios"]["speedup"] == pytest.approx(5.0)
    assert result["ratios"]["cpu_ratio"] == pytest.approx(5.0)
    assert result["ratios"]["rss_ratio"] == pytest.approx(4.0)
    text = demo_compare.format_table(result)
    assert "1,500" in text and "5.0x the images/s" in text and "4.0x less peak RSS" in text
    assert "PyTorch DataLoader, 2 workers (torch ?, torchvision)" in text


# ------------------------------------------------------------ measuring


def test_tree_sampler_sees_children_memory():
    code = "import time; b = bytearray(150 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.6)"
    with measure.TreeSampler(interval_s=0.02) as s:
        p = subprocess.Popen([sys.executable, "-c", code])
        p.wait()
    assert s.peak_processes >= 2
    assert s.peak_rss_bytes >= measure.rss_bytes() + (140 << 20)


def test_tree_cpu_counts_children():
    before = measure.tree_cpu_seconds()
    subprocess.run([sys.executable, "-c", "t = __import__('time').process_time\nwhile t() < 0.3: pass"],
                   check=True)
    assert measure.tree_cpu_seconds() - before >= 0.25
    # The stopwatch on a clock the test moves: laps and elapsed, exactly.
    clock = iter([10.0, 10.25, 11.0, 11.5])
    saved = measure.time.perf_counter
    measure.time.perf_counter = lambda: next(clock)
    try:
        sw = measure.Stopwatch()
        assert sw.lap() == 0.25 and sw.lap() == 0.75 and sw.elapsed() == 1.5
        assert sw.laps == [0.25, 0.75]
    finally:
        measure.time.perf_counter = saved
    assert measure.median([3, 1, 2]) == 2
    assert measure.jsonable({"a": float("nan"), "b": [1.0]}) == {"a": None, "b": [1.0]}
    assert measure.machine_info()["nproc"] >= 1
