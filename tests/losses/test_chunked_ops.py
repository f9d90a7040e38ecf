"""`kc.ops.map_row_chunks`: blockwise evaluation with recomputed gradients."""

import re

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_contrastive import losses as L
from keras_contrastive.ops import map_row_chunks


def _rows_against_candidates(anchors, unused, self_index, candidates, bias):
    """Two per-row outputs, one of them `(n, 2)`, from rows, ints and a shared scalar."""
    logits = ops.matmul(anchors, ops.transpose(candidates)) * bias
    not_self = ops.arange(ops.shape(candidates)[0])[None, :] != self_index[:, None]
    kept = ops.where(not_self, logits, -1e9)
    top = ops.max(kept, axis=-1)
    pair = ops.stack([ops.logsumexp(kept, axis=-1), ops.sum(ops.square(logits), axis=-1)], axis=-1)
    return top, pair


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {
        "anchors": tf.constant(rng.normal(size=(11, 3)), "float32"),
        "unused": tf.constant(rng.normal(size=(11,)), "float32"),
        "self_index": tf.constant(rng.integers(-1, 13, size=11), "int32"),
        "candidates": tf.constant(rng.normal(size=(13, 3)), "float32"),
        "bias": tf.constant(0.7),
        "upstream": (
            tf.constant(rng.normal(size=(11,)), "float32"),
            tf.constant(rng.normal(size=(11, 2)), "float32"),
        ),
    }


def _evaluate(data, chunk_size):
    floats = [data["anchors"], data["unused"], data["candidates"], data["bias"]]
    with tf.GradientTape() as tape:
        tape.watch(floats)
        outputs = map_row_chunks(
            _rows_against_candidates,
            (data["anchors"], data["unused"], data["self_index"]),
            (data["candidates"], data["bias"]),
            chunk_size,
        )
        loss = sum(tf.reduce_sum(y * u) for y, u in zip(outputs, data["upstream"], strict=True))
    return list(outputs), tape.gradient(loss, floats)


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 11, 30])
def test_outputs_and_gradients_equal_the_dense_call(data, chunk_size):
    dense_outputs, dense_grads = _evaluate(data, None)
    outputs, grads = _evaluate(data, chunk_size)
    assert [y.shape for y in outputs] == [(11,), (11, 2)]
    for got, expected in zip(outputs, dense_outputs, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    for k in (0, 2, 3):  # anchors, candidates, the shared scalar
        np.testing.assert_allclose(grads[k], dense_grads[k], rtol=1e-5, atol=1e-6)
    # A float row input that the outputs do not use gets a zero gradient.
    assert dense_grads[1] is None
    np.testing.assert_array_equal(grads[1], np.zeros(11))


def test_dense_call_is_the_function_itself(data):
    calls = []

    def fn(rows, shared):
        calls.append(rows.shape)
        return ops.sum(rows, axis=-1)

    map_row_chunks(fn, (data["anchors"],), (data["candidates"],))
    assert calls == [(11, 3)]


def _largest_array(chunk_size, batch):
    """Elements of the largest array in the compiled NT-Xent forward + backward."""

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(L.ntxent_loss(None, x, 0.1, chunk_size=chunk_size))
        return tape.gradient(loss, x)

    hlo = step.experimental_get_compiler_ir(tf.zeros((batch, 2, 2)))(stage="optimized_hlo")
    shapes = re.findall(r"(?:f32|s32|pred)\[([\d,]+)\]", hlo)
    return max(int(np.prod([int(d) for d in shape.split(",")])) for shape in shapes)


def test_compiled_memory_grows_linearly_with_the_batch_when_chunked():
    # D = 2, so any (2B, 2B) array would dwarf every (2B, D) one.
    assert _largest_array(None, 64) >= (2 * 64) ** 2
    assert _largest_array(None, 64) / _largest_array(None, 32) >= 4
    assert _largest_array(8, 64) <= 4 * 8 * (2 * 64)
    assert _largest_array(8, 64) / _largest_array(8, 32) <= 2


def test_zero_rows_give_empty_outputs_and_gradients(data):
    def fn(anchors, candidates):
        return ops.logsumexp(ops.matmul(anchors, ops.transpose(candidates)), axis=-1)

    anchors = tf.zeros((0, 3))
    with tf.GradientTape() as tape:
        tape.watch([anchors, data["candidates"]])
        values = map_row_chunks(fn, (anchors,), (data["candidates"],), 4)
        loss = tf.reduce_sum(values)
    grad_anchors, grad_candidates = tape.gradient(loss, [anchors, data["candidates"]])
    assert values.shape == (0,) and grad_anchors.shape == (0, 3)
    np.testing.assert_array_equal(grad_candidates, np.zeros((13, 3)))
