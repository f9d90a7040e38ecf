"""Shared test set-up: quiet TensorFlow, TensorFlow backend, deterministic seeds."""

import functools
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Four logical CPUs, so that MirroredStrategy tests run on 2 and 4 "devices".
# This must happen before TensorFlow initialises its devices.
NUM_LOGICAL_CPUS = 4
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS,
)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


_strategies_made = 0


def cpu_strategy(num_replicas):
    """A fresh MirroredStrategy over `num_replicas` logical CPUs.

    Every strategy gets its own collective key range ("joining a group with
    size 4, but that group has size 2" otherwise), as TensorFlow's own tests
    do. Strategies are not shared between tests: a trace that raises on one
    replica leaves the replicas' collective instance counters out of step,
    and the next collective on that strategy would pair mismatched ops.
    """
    global _strategies_made
    _strategies_made += 1
    tf.distribute.MirroredStrategy._collective_key_base = 10_000 * _strategies_made
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(num_replicas)])


_ISOLATED = "KERAS_CONTRASTIVE_ISOLATED_TEST"


def in_fresh_process(test):
    """Runs a test in a fresh Python process of its own.

    For the `MirroredStrategy` training tests: TensorFlow's collective ops keep
    process-wide state, and a collective left in a bad state by an earlier test
    in the same process can abort theirs. In a process of their own they see
    none of it.
    """

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if os.environ.get(_ISOLATED):
            return test(*args, **kwargs)
        node = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=pathlib.Path(__file__).resolve().parents[1],
            env={**os.environ, _ISOLATED: "1"},
        )
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]

    return wrapper


@pytest.fixture
def rng():
    return np.random.default_rng(0)
