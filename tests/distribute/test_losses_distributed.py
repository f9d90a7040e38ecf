"""Losses under MirroredStrategy score local rows against global candidates.

Dense and chunked, each replica's gradient summed equals one device's on the global batch.
"""

import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy

import keras_contrastive as kc
from keras_contrastive import losses as L

NEGATIVES = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
CHUNK = 3  # divides neither the local batches (4 or 2 rows; 8 or 4 anchors) nor the global one

# name: (fn(labels, x, chunk_size), y_pred shape)
CASES = {
    "ntxent": (lambda y, x, c: L.ntxent_loss(None, x, 0.2, c), (8, 2, 3)),
    "info_nce": (lambda y, x, c: L.info_nce_loss(None, x, 0.2, None, c), (8, 2, 3)),
    "info_nce_queue": (lambda y, x, c: L.info_nce_loss(None, x, 0.2, NEGATIVES, c), (8, 2, 3)),
    "supcon": (lambda y, x, c: L.supcon_loss(y, x, 0.2, None, c), (8, 2, 3)),
    "supcon_single_view": (lambda y, x, c: L.supcon_loss(y, x, 0.2, None, c), (8, 3)),
    "clip": (lambda y, x, c: L.clip_loss(None, x, 0.2, c), (8, 2, 3)),
    "clip_groups": (lambda y, x, c: L.clip_loss(y, x, 0.2, c), (8, 2, 3)),
    "siglip": (lambda y, x, c: L.siglip_loss(None, x, 0.2, -1.0, c), (8, 2, 3)),
    "siglip_groups": (lambda y, x, c: L.siglip_loss(y, x, 0.2, -1.0, c), (8, 2, 3)),
    # Mined over the candidates of all replicas (no chunked form).
    "triplet_batch_all": (lambda y, x, c: L.triplet_loss(y, x, 1.0, "batch_all"), (8, 3)),
    "triplet_batch_hard": (lambda y, x, c: L.triplet_loss(y, x, 1.0, "batch_hard"), (8, 3)),
    "triplet_semi_hard": (lambda y, x, c: L.triplet_loss(y, x, 1.0, "semi_hard"), (8, 3)),
}
RUNS = (
    [(name, None, n) for name in sorted(CASES) for n in (2, 4)]  # dense
    + [(name, CHUNK, 2) for name in sorted(CASES) if not name.startswith("triplet")]
    + [(name, CHUNK, 4) for name in ("ntxent", "supcon", "clip_groups", "siglip")]
)


@pytest.mark.parametrize("name,chunk_size,num_replicas", RUNS)
def test_replica_gradients_sum_to_single_device_dense_gradient(name, chunk_size, num_replicas):
    fn, shape = CASES[name]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    y = np.array([0, 1, 0, 3, 1, 2, 2, 0], "int32")  # anchor 3 has no positive
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(fn(y, variable, None))
    expected_grad = tape.gradient(loss, variable)

    strategy = cpu_strategy(num_replicas)
    local = shape[0] // num_replicas

    def step(x_all):
        ctx = tf.distribute.get_replica_context()
        start = ctx.replica_id_in_sync_group * local
        y_local = tf.slice(tf.constant(y), [start], [local])
        with tf.GradientTape() as tape:
            tape.watch(x_all)
            x_local = tf.slice(x_all, [start] + [0] * (len(shape) - 1), (local,) + shape[1:])
            # Keras' scaling: the local mean divided by the number of replicas.
            local_loss = tf.reduce_mean(fn(y_local, x_local, chunk_size)) / num_replicas
        return local_loss, tape.gradient(local_loss, x_all)

    losses, grads = strategy.run(tf.function(step), args=(tf.constant(x),))
    total = strategy.reduce("SUM", losses, axis=None)
    grad = strategy.reduce("SUM", grads, axis=None)
    np.testing.assert_allclose(total, loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_gather_equals_all_gather_with_gradients_ints_and_uneven_batches():
    strategy = cpu_strategy(2)
    x = np.random.default_rng(2).normal(size=(5, 3)).astype("float32")
    ids = np.array([2**40 + 3, 7, 7, -1, 0], "int64")
    weight = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")
    sizes = (3, 2)  # uneven local batches

    def step(x_all, ids_all):
        ctx = tf.distribute.get_replica_context()
        start = tf.constant(sizes[:1])[: ctx.replica_id_in_sync_group]
        start, size = tf.reduce_sum(start), tf.constant(sizes)[ctx.replica_id_in_sync_group]
        local_ids = tf.slice(ids_all, [start], [size])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x_all)
            local = tf.slice(x_all, [start, 0], [size, 3])
            gathered, offset = kc.distribute.gather_candidates(local)
            reference = ctx.all_gather(local, axis=0)
            # A different upstream gradient on each replica, as from different anchors.
            scale = tf.cast(ctx.replica_id_in_sync_group + 1, "float32")
            ours = tf.reduce_sum(gathered * weight * scale)
            theirs = tf.reduce_sum(reference * weight * scale)
        gathered_ids, _ = kc.distribute.gather_candidates(local_ids)
        return (
            gathered,
            reference,
            offset,
            gathered_ids,
            tape.gradient(ours, x_all),
            tape.gradient(theirs, x_all),
        )

    outputs = strategy.run(tf.function(step), args=(tf.constant(x), tf.constant(ids)))
    for replica, (gathered, reference, offset, gathered_ids, grad, grad_ref) in enumerate(
        zip(*[strategy.experimental_local_results(o) for o in outputs], strict=True)
    ):
        np.testing.assert_array_equal(gathered, x)
        np.testing.assert_array_equal(reference, x)
        assert int(offset) == (0, 3)[replica]
        assert gathered_ids.dtype == tf.int64
        np.testing.assert_array_equal(gathered_ids, ids)
        # Each replica's rows receive the upstream gradients of both replicas summed.
        rows = slice((0, 3)[replica], (3, 5)[replica])
        expected = np.zeros_like(x)
        expected[rows] = (1 + 2) * weight[rows]
        np.testing.assert_allclose(grad, expected, rtol=1e-6)
        np.testing.assert_allclose(grad_ref, expected, rtol=1e-6)
