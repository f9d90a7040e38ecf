"""Losses under MirroredStrategy score local rows against global candidates."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy

from keras_contrastive import losses as L

CASES = {
    "ntxent": (lambda y, x: L.ntxent_loss(None, x, 0.2), (8, 2, 3), False),
    "info_nce": (lambda y, x: L.info_nce_loss(None, x, 0.2), (8, 2, 3), False),
    "supcon": (lambda y, x: L.supcon_loss(y, x, 0.2), (8, 2, 3), True),
    "supcon_single_view": (lambda y, x: L.supcon_loss(y, x, 0.2), (8, 3), True),
    "clip": (lambda y, x: L.clip_loss(None, x, 0.2), (8, 2, 3), False),
    "clip_groups": (lambda y, x: L.clip_loss(y, x, 0.2), (8, 2, 3), True),
}


@pytest.mark.parametrize("num_replicas", [2, 4])
@pytest.mark.parametrize("name", sorted(CASES))
def test_replica_gradients_sum_to_single_device_gradient(name, num_replicas):
    fn, shape, labelled = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    y = np.array([0, 1, 0, 3, 1, 2, 2, 0], "int32")  # anchor 3 has no positive
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(fn(y, variable))
    expected_grad = tape.gradient(loss, variable)

    strategy = cpu_strategy(num_replicas)
    local = shape[0] // num_replicas

    def step(x_all):
        ctx = tf.distribute.get_replica_context()
        start = ctx.replica_id_in_sync_group * local
        y_local = tf.slice(tf.constant(y), [start], [local])
        with tf.GradientTape() as tape:
            tape.watch(x_all)
            x_local = tf.slice(
                x_all,
                tf.concat([[start], tf.zeros(len(shape) - 1, "int32")], 0),
                (local,) + shape[1:],
            )
            # Keras' scaling: the local mean divided by the number of replicas.
            local_loss = tf.reduce_mean(fn(y_local, x_local)) / num_replicas
        return local_loss, tape.gradient(local_loss, x_all)

    losses, grads = strategy.run(tf.function(step), args=(tf.constant(x),))
    total = strategy.reduce("SUM", losses, axis=None)
    grad = strategy.reduce("SUM", grads, axis=None)
    np.testing.assert_allclose(total, loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
