"""Batch-all and semi-hard mining in O(B²) memory vs the (B, B, B) formulas they replaced.

The cubic formulas below are the previous implementation, written out with every
triplet materialized; the new one must give the same values and gradients,
ties, empty classes and compiled runs included.
"""

import re

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_contrastive.ops import (
    batch_all_triplet_values,
    pairwise_distance,
    semi_hard_triplet_values,
)

BIG = 1e30


def masks(labels):
    same = labels[:, None] == labels[None, :]
    pos = ops.logical_and(same, ops.logical_not(ops.cast(ops.eye(len(labels)), "bool")))
    return pos, ops.logical_not(same)


def spread(per_anchor, count):
    return per_anchor * len(per_anchor) / ops.maximum(ops.cast(count, per_anchor.dtype), 1.0)


def cubic_batch_all(labels, d, margin):
    pos, neg = masks(labels)
    valid = ops.logical_and(pos[:, :, None], neg[:, None, :])
    losses = ops.where(valid, ops.maximum(d[:, :, None] - d[:, None, :] + margin, 0.0), 0.0)
    return spread(ops.sum(losses, axis=(1, 2)), ops.sum(ops.cast(losses > 1e-16, "int32")))


def cubic_semi_hard(labels, d, margin):
    pos, neg = masks(labels)
    farther = ops.logical_and(neg[:, None, :], d[:, None, :] > d[:, :, None])
    d_an = ops.broadcast_to(d[:, None, :], ops.shape(farther))
    closest_farther = ops.min(ops.where(farther, d_an, BIG), axis=2)
    farthest = ops.max(ops.where(neg, d, -BIG), axis=1)[:, None]
    chosen = ops.where(ops.any(farther, axis=2), closest_farther, farthest)
    valid = ops.logical_and(pos, ops.any(neg, axis=1)[:, None])
    losses = ops.where(valid, ops.maximum(d - chosen + margin, 0.0), 0.0)
    return spread(ops.sum(losses, axis=1), ops.sum(ops.cast(valid, "int32")))


MINING = {
    "batch_all": (batch_all_triplet_values, cubic_batch_all),
    "semi_hard": (semi_hard_triplet_values, cubic_semi_hard),
}


def values_and_gradient(fn, labels, x, margin, distance="euclidean"):
    """Per-anchor values, and the gradient of their weighted sum w.r.t. the embeddings."""
    x = tf.convert_to_tensor(x)
    weights = tf.cast(tf.range(1, tf.shape(x)[0] + 1), x.dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        values = fn(labels, pairwise_distance(x, distance=distance), margin)
        total = tf.reduce_sum(values * weights)
    return values, tape.gradient(total, x)


def assert_matches_cubic(mining, labels, x, margin, distance="euclidean", tol=1e-5):
    new, cubic = MINING[mining]
    values, gradient = values_and_gradient(new, labels, x, margin, distance)
    expected_values, expected_gradient = values_and_gradient(cubic, labels, x, margin, distance)
    np.testing.assert_allclose(values, expected_values, rtol=tol, atol=tol)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=tol, atol=tol)
    return values


def random_batch(rng, batch, num_classes, dim=4, scale=1.0):
    labels = rng.integers(0, num_classes, batch)
    return labels, (scale * rng.normal(size=(batch, dim))).astype("float32")


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("batch,num_classes", [(2, 2), (7, 3), (32, 4), (96, 10)])
@pytest.mark.parametrize("margin", [0.0, 0.2, 1.0])
def test_matches_cubic_formula(rng, mining, batch, num_classes, margin):
    assert_matches_cubic(mining, *random_batch(rng, batch, num_classes), margin)


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("distance", ["squared_euclidean", "cosine"])
def test_matches_cubic_formula_for_each_distance(rng, mining, distance):
    assert_matches_cubic(mining, *random_batch(rng, 24, 3), 0.5, distance)


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_ties_give_the_same_gradients(rng, mining, margin):
    # Points on a small integer grid: many equal distances (to negatives, between
    # positives and negatives, at exactly the margin) and duplicate points.
    labels = rng.integers(0, 3, 24)
    x = rng.integers(0, 3, size=(24, 2)).astype("float32")
    assert_matches_cubic(mining, labels, x, margin, distance="squared_euclidean")
    assert_matches_cubic(mining, labels, x, margin)


@pytest.mark.parametrize("mining", MINING)
def test_single_member_classes_have_no_triplets_as_anchors(rng, mining):
    labels = np.array([0, 0, 0, 1, 2, 3, 4, 4])
    x = rng.normal(size=(8, 3)).astype("float32")
    values = assert_matches_cubic(mining, labels, x, 0.5)
    np.testing.assert_array_equal(values[3:6], 0.0)  # anchors 3, 4 and 5 have no positive


@pytest.mark.parametrize("mining", MINING)
def test_one_class_has_no_negatives(rng, mining):
    x = rng.normal(size=(6, 3)).astype("float32")
    values = assert_matches_cubic(mining, np.zeros(6, "int32"), x, 1.0)
    np.testing.assert_array_equal(values, 0.0)


def test_semi_hard_without_a_farther_negative_takes_the_farthest():
    # On a line: each positive is farther from its anchor than both negatives.
    labels = np.array([0, 0, 1, 1])
    x = np.array([[0.0], [10.0], [-5.0], [15.0]], "float32")
    values = assert_matches_cubic("semi_hard", labels, x, 1.0)
    # Anchor 0: d(a, p) = 10, farthest negative 15 -> max(0, 10 - 15 + 1) = 0;
    # anchor 2: d(a, p) = 20, farthest negative 15 -> 6, twice over its pair.
    per_pair = np.array([0.0, 0.0, 6.0, 6.0])  # anchors 1 and 3 likewise
    np.testing.assert_allclose(values, per_pair, rtol=1e-6)


def test_batch_all_stays_exact_when_distances_dwarf_the_margin(rng):
    # Unit-norm directions at radius 100: every distance is about 141 and the
    # losses about 1, where uncentered running sums of distances lose digits.
    x = rng.normal(size=(256, 64))
    x = (100.0 * x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
    assert_matches_cubic("batch_all", rng.integers(0, 10, 256), x, 1.0)


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_with_unknown_batch_matches_eager(rng, mining, jit_compile):
    labels, x = random_batch(rng, 20, 4)
    fn = MINING[mining][0]
    eager = values_and_gradient(fn, labels, x, 0.5)
    compiled = tf.function(
        lambda labels, x: values_and_gradient(fn, labels, x, 0.5),
        jit_compile=jit_compile,
        input_signature=[tf.TensorSpec([None], "int64"), tf.TensorSpec([None, 4], "float32")],
    )
    for expected, got in zip(eager, compiled(labels, x), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mining", MINING)
def test_no_cubic_tensor_even_under_xla(rng, mining):
    labels, x = random_batch(rng, 12, 3)
    fn = MINING[mining][0]

    @tf.function(jit_compile=True)
    def step(labels, x):
        return values_and_gradient(fn, labels, x, 0.5)

    hlo = step.experimental_get_compiler_ir(tf.constant(labels), tf.constant(x))(stage="hlo")
    shapes = re.findall(r"\[([\d,]+)\]", hlo)
    sizes = [np.prod([int(n) for n in shape.split(",")]) for shape in shapes]
    assert 12 * 12 in sizes
    assert max(sizes) < 12**3  # e.g. (12, 12, 2) gather indices, never (12, 12, 12)


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int64"])
def test_any_integer_label_dtype(rng, mining, dtype):
    labels, x = random_batch(rng, 10, 3)
    fn = MINING[mining][0]
    d = pairwise_distance(x)
    expected = fn(labels.astype("int32"), d, 0.5)
    np.testing.assert_array_equal(fn(labels.astype(dtype), d, 0.5), expected)


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_distances_are_mined_in_float32(rng, mining, dtype):
    labels, x = random_batch(rng, 16, 3)
    fn = MINING[mining][0]
    d = ops.cast(pairwise_distance(x), dtype)
    values = fn(labels, d, 0.5)
    assert values.dtype == dtype
    expected = fn(labels, ops.cast(d, "float32"), 0.5)
    np.testing.assert_array_equal(values, ops.cast(expected, dtype))
