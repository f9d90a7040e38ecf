"""A training process SIGKILLed at any moment, even while writing a backup, resumes exactly.

Each test runs resume_worker.py (a tiny ContrastiveModel with
kc.callbacks.BackupAndRestore) in fresh processes and compares the final weights
with those of one uninterrupted run.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")

pytestmark = pytest.mark.slow


def run(*args):
    return subprocess.run(
        [sys.executable, WORKER, *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Weights and losses of an uninterrupted run (3 epochs of 4 batches)."""
    out = tmp_path_factory.mktemp("straight") / "out.npz"
    result = run(out.parent / "backup", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(np.load(out))


@pytest.mark.parametrize("save_freq", ["epoch", 3])
def test_killed_run_resumes_to_the_same_weights(tmp_path, straight, save_freq):
    # With save_freq=3 the last backup is mid-epoch 1 (after its batch 1), and the
    # process dies after batch 2: the resume must skip batches 0 and 1 and redo batch 2.
    killed = run(
        tmp_path / "backup",
        tmp_path / "never.npz",
        "--save-freq",
        save_freq,
        "--die-at-epoch",
        1,
        "--die-at-batch",
        2,
    )
    assert killed.returncode == 3, killed.stderr[-2000:]
    assert not (tmp_path / "never.npz").exists()
    resumed = run(tmp_path / "backup", tmp_path / "resumed.npz", "--save-freq", save_freq)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = np.load(tmp_path / "resumed.npz")
    np.testing.assert_allclose(result["weights"], straight["weights"], atol=1e-6)
    np.testing.assert_allclose(result["loss"], straight["loss"][1:], rtol=1e-6)
    assert not (tmp_path / "backup").exists()  # deleted at the end, as Keras does


def test_sigkilled_at_random_moments_while_backing_up_every_batch(tmp_path, straight):
    """Killed 4 times at random moments of `fit(save_freq=1)`, ~40% of which is writing."""
    backup, out = tmp_path / "backup", tmp_path / "out.npz"
    chance = random.Random(0)
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, WORKER, backup, out, "--save-freq", "1", "--report"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout.readline() == "batch\n"  # training (and backing up) has begun
        time.sleep(chance.uniform(0.0, 0.15))
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
        assert not out.exists()
    finished = run(backup, out, "--save-freq", 1)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Cannot restore" not in finished.stderr  # every kill left a complete backup
    np.testing.assert_allclose(np.load(out)["weights"], straight["weights"], atol=1e-6)
