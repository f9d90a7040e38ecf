"""`fit` under MultiWorkerMirroredStrategy: two local worker processes, one result."""

import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "multi_worker_worker.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(out, *args):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, WORKER, str(out), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output.decode()[-3000:]


def test_two_workers_match_one_process_on_the_same_global_batches(tmp_path):
    ports = f"{free_port()},{free_port()}"
    workers = [start(tmp_path / f"worker_{i}.npy", "--ports", ports, "--index", i) for i in (0, 1)]
    single = start(tmp_path / "single.npy")
    for process in (*workers, single):
        finish(process)

    weights = [np.load(tmp_path / f"{name}.npy") for name in ("worker_0", "worker_1", "single")]
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_allclose(weights[0], weights[2], atol=1e-5)
    assert not np.allclose(weights[2], 0.0)
    losses = [np.load(tmp_path / f"{name}_loss.npy") for name in ("worker_0", "single")]
    assert losses[1].shape == (3,)  # two epochs of fit, then evaluate
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
