"""A real multi-process run: torchrun, 2 processes, gloo, with a mid-epoch
checkpoint and a resume on a different number of processes."""
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "ddp_train.py"


def torchrun(nproc, *args, cwd):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(EXAMPLE), *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def seen(log):
    by_epoch = defaultdict(list)
    for line in Path(log).read_text().splitlines():
        rec = json.loads(line)
        by_epoch[rec["epoch"]] += rec["index"]
    return by_epoch


def test_two_ranks_cover_the_dataset(image_folder, tmp_path):
    log = tmp_path / "seen.jsonl"
    torchrun(2, "--data", image_folder, "--epochs", 1, "--batch-size", 4, "--size", 32,
             "--checkpoint", tmp_path / "none.pt", "--seen-log", log, cwd=tmp_path)
    indices = seen(log)[0]
    # 37 samples over 2 ranks: 19 each, one padded sample repeated.
    assert len(indices) == 38
    assert set(indices) == set(range(37))


def test_checkpoint_mid_epoch_then_resume_on_one_rank(image_folder, tmp_path):
    log = tmp_path / "seen.jsonl"
    ckpt = tmp_path / "ckpt.pt"
    out = torchrun(2, "--data", image_folder, "--epochs", 1, "--batch-size", 4, "--size", 32,
                   "--checkpoint", ckpt, "--stop-after", 2, "--seen-log", log, cwd=tmp_path)
    assert "checkpoint at step 2" in out
    first = seen(log)[0]
    assert len(first) == 2 * 2 * 4  # 2 ranks x 2 steps x 4
    out = torchrun(1, "--data", image_folder, "--epochs", 1, "--batch-size", 4, "--size", 32,
                   "--checkpoint", ckpt, "--seen-log", log, cwd=tmp_path)
    assert "resumed at epoch 0, position 16" in out
    everything = seen(log)[0]
    assert sorted(everything) == list(range(37))  # each sample exactly once
