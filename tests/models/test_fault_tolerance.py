"""A training process killed mid-epoch resumes from its backup to the same weights."""

import os
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")


def run(*args):
    return subprocess.run(
        [sys.executable, WORKER, *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    killed = run(
        tmp_path / "backup", tmp_path / "never.npy", "--die-at-epoch", 1, "--die-at-batch", 2
    )
    assert killed.returncode == 3, killed.stderr[-2000:]
    assert not (tmp_path / "never.npy").exists()
    resumed = run(tmp_path / "backup", tmp_path / "resumed.npy")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = run(tmp_path / "fresh_backup", tmp_path / "straight.npy")
    assert straight.returncode == 0, straight.stderr[-2000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "straight.npy"), atol=1e-6
    )
