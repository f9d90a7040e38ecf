"""NNCLRLoss against a float64 NumPy reference: values, gradients, chunks, XLA, replicas."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import replica_sum

from keras_contrastive.losses._base import LossContract, contract_of
from keras_contrastive.losses.nnclr_loss import NNCLRLoss, nnclr_loss


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def direction(queries, keys, tau):
    """Per query i: −log softmax_k(q̂_i · k̂_k / τ) at k = i, with explicit loops."""
    q, k = unit(np.asarray(queries, np.float64)), unit(np.asarray(keys, np.float64))
    out = []
    for i in range(len(q)):
        logits = [float(q[i] @ k[j]) / tau for j in range(len(k))]
        top = max(logits)
        out.append(top + np.log(sum(np.exp(s - top) for s in logits)) - logits[i])
    return np.array(out)


def reference(rows, tau=0.1):
    """`(B,)` ½ [ℓ(NN(z1) -> p2) + ℓ(NN(z2) -> p1)] of `(B, 4, D)` rows."""
    return 0.5 * (direction(rows[:, 0], rows[:, 1], tau) + direction(rows[:, 2], rows[:, 3], tau))


def reference_gradient(rows, tau=0.1):
    """d mean(loss) / d rows, by the formula: softmax − identity, through the normalization."""
    rows = np.asarray(rows, np.float64)
    batch = len(rows)
    gradient = np.zeros_like(rows)
    for query, key in ((0, 1), (2, 3)):
        q_raw, k_raw = rows[:, query], rows[:, key]
        q, k = unit(q_raw), unit(k_raw)
        logits = q @ k.T / tau
        soft = np.exp(logits - logits.max(axis=1, keepdims=True))
        soft /= soft.sum(axis=1, keepdims=True)
        coefficient = 0.5 * (soft - np.eye(batch)) / (batch * tau)  # d loss / d logit·τ
        d_q, d_k = coefficient @ k, coefficient.T @ q  # w.r.t. the unit vectors
        for index, raw, d in ((query, q_raw, d_q), (key, k_raw, d_k)):
            u = unit(raw)
            norm = np.linalg.norm(raw, axis=-1, keepdims=True)
            gradient[:, index] = (d - np.sum(d * u, axis=-1, keepdims=True) * u) / norm
    return gradient


@pytest.mark.parametrize("batch,dim,tau", [(2, 3, 0.1), (5, 4, 0.5), (9, 6, 0.07)])
def test_values_match_reference(rng, batch, dim, tau):
    rows = rng.normal(scale=2.0, size=(batch, 4, dim))
    values = nnclr_loss(None, rows.astype("float32"), tau)
    assert values.shape == (batch,) and values.dtype == "float32"
    np.testing.assert_allclose(values, reference(rows, tau), rtol=1e-5, atol=1e-5)
    mean = NNCLRLoss(temperature=tau)(None, rows.astype("float32"))
    np.testing.assert_allclose(mean, reference(rows, tau).mean(), rtol=1e-5)


def test_the_two_directions_are_not_each_others_negatives():
    # Direction 1 is perfect (each query its own key, the others orthogonal); direction 2's
    # keys are all equal: −log(1/B) each. Mixed candidates would change both numbers.
    eye = np.eye(3, dtype="float32")
    same = np.ones((3, 3), "float32")
    rows = np.stack([eye, eye, eye, same], axis=1)
    expected = 0.5 * (np.log(1 + 2 * np.exp(-10.0)) + np.log(3.0))
    np.testing.assert_allclose(nnclr_loss(None, rows), [expected] * 3, rtol=1e-6)


def test_gradient_matches_reference(rng):
    rows = rng.normal(size=(6, 4, 5))
    variable = tf.Variable(rows)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(nnclr_loss(None, variable, 0.2))
    gradient = tape.gradient(loss, variable).numpy()
    np.testing.assert_allclose(gradient, reference_gradient(rows, 0.2), rtol=1e-6, atol=1e-9)


def test_chunks_and_xla_give_the_same_values_and_gradients(rng):
    rows = tf.constant(rng.normal(size=(7, 4, 5)).astype("float32"))

    def value_and_gradient(loss):
        with tf.GradientTape() as tape:
            tape.watch(rows)
            value = loss(None, rows)
        return value, tape.gradient(value, rows)

    dense = value_and_gradient(NNCLRLoss())
    chunked = value_and_gradient(NNCLRLoss(chunk_size=3))
    xla = tf.function(lambda: value_and_gradient(NNCLRLoss()), jit_compile=True)()
    for other in (chunked, xla):
        for got, want in zip(other, dense, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_temperature_state_and_sample_weights(rng):
    rows = rng.normal(size=(4, 4, 3)).astype("float32")
    loss = NNCLRLoss(temperature=0.1)
    learned = loss(None, {"embeddings": rows, "temperature": tf.constant(0.5)})
    np.testing.assert_allclose(learned, reference(rows, 0.5).mean(), rtol=1e-5)
    assert loss.temperature == 0.1  # the configured one is left as it was
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    weighted = loss(None, rows, sample_weight=weights)
    np.testing.assert_allclose(weighted, np.sum(reference(rows) * weights) / 4, rtol=1e-5)


def test_contract_and_config_round_trip():
    assert contract_of(NNCLRLoss()) == LossContract(
        labels="ignored", y_pred="views", state=("temperature",)
    )
    loss = NNCLRLoss(temperature=0.2, chunk_size=8, name="nn")
    config = loss.get_config()
    json.dumps(config)
    again = NNCLRLoss.from_config(config)
    assert (again.temperature, again.chunk_size, again.name) == (0.2, 8, "nn")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, NNCLRLoss) and restored.temperature == 0.2


def test_bad_arguments_and_inputs_are_refused(rng):
    with pytest.raises(ValueError, match="`temperature` must be a finite number > 0"):
        NNCLRLoss(temperature=0.0)
    with pytest.raises(TypeError, match="`temperature`"):
        NNCLRLoss(temperature="0.1")
    with pytest.raises(ValueError, match="chunk_size"):
        NNCLRLoss(chunk_size=0)
    loss = NNCLRLoss()
    with pytest.raises(ValueError, match=r"\(B, 4, D\) rows \(NN\(z1\), p2, NN\(z2\), p1\)"):
        loss(None, rng.normal(size=(4, 2, 3)).astype("float32"))
    with pytest.raises(ValueError, match="at least 2"):
        loss(None, rng.normal(size=(1, 4, 3)).astype("float32"))
    rows = rng.normal(size=(4, 4, 3)).astype("float32")
    rows[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        loss(None, rows)


@pytest.mark.parametrize("sizes", [(4, 4), (5, 3)], ids=["even", "uneven"])
def test_replicas_sum_to_the_single_device_value_and_gradient(rng, sizes):
    rows = rng.normal(size=(8, 4, 3)).astype("float32")
    variable = tf.Variable(rows)
    with tf.GradientTape() as tape:
        single = tf.reduce_mean(nnclr_loss(None, variable))
    single_gradient = tape.gradient(single, variable)

    total, gradient = replica_sum(lambda x: nnclr_loss(None, x), rows, sizes)
    np.testing.assert_allclose(total, single, rtol=1e-5)
    np.testing.assert_allclose(gradient, single_gradient, rtol=1e-4, atol=1e-6)
