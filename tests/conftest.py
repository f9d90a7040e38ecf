"""Shared test set-up: quiet TensorFlow, TensorFlow backend, deterministic seeds."""

import os

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

import keras_contrastive as kc  # noqa: E402  (after the devices are configured)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


def cpu_strategy(num_replicas):
    """A fresh MirroredStrategy over `num_replicas` logical CPUs, with keys of its own.

    `kc.distribute.isolate_collective_keys` is what a custom loop running
    several strategies in one process calls (`ContrastiveModel.compile` calls
    it itself): the tests here run the losses in `strategy.run` on 2 and 4
    replicas. Strategies are not shared between tests: a trace that raises on
    one replica leaves the replicas' collective instance counters out of
    step, and the next collective on that strategy would pair mismatched ops.
    """
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(num_replicas)])
    return kc.distribute.isolate_collective_keys(strategy)


def replica_sum(fn, x, sizes):
    """The replicas' losses and gradients summed: replica r holds rows `sizes[r]`.

    Each replica's mean is scaled by its share of the batch, `b_r / B`: Keras'
    `1 / num_replicas` for an even split, as `ContrastiveModel` scales an uneven one.
    """
    strategy = cpu_strategy(len(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("int32")

    def step(x_all):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        start = tf.gather(tf.constant(starts), replica)
        size = tf.gather(tf.constant(sizes, "int32"), replica)
        with tf.GradientTape() as tape:
            tape.watch(x_all)
            local = tf.reshape(tf.slice(x_all, [start, 0, 0], [size, -1, -1]), (-1,) + x.shape[1:])
            share = tf.cast(size, "float32") / x.shape[0]
            loss = tf.reduce_mean(fn(local)) * share
        return loss, tape.gradient(loss, x_all)

    losses, grads = strategy.run(tf.function(step, autograph=False), args=(tf.constant(x),))
    return strategy.reduce("SUM", losses, axis=None), strategy.reduce("SUM", grads, axis=None)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
