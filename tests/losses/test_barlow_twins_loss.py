"""BarlowTwinsLoss against a loop-based float64 NumPy reference: values, gradients, replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import replica_sum
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_contrastive.losses._base import LossContract, contract_of
from keras_contrastive.losses.barlow_twins_loss import BarlowTwinsLoss, barlow_twins_loss


def reference(x, lambda_=0.0051):
    """The official code in float64: BatchNorm1d(affine=False) per view, C = z1ᵀz2 / B."""
    x = np.asarray(x, np.float64)
    batch, _, dim = x.shape

    def batch_norm(z):
        mean = z.sum(axis=0) / batch
        variance = ((z - mean) ** 2).sum(axis=0) / batch  # biased, as in training mode
        return (z - mean) / np.sqrt(variance + 1e-5)

    z1, z2 = batch_norm(x[:, 0]), batch_norm(x[:, 1])
    loss = 0.0
    for i in range(dim):
        for j in range(dim):
            c_ij = sum(z1[k, i] * z2[k, j] for k in range(batch)) / batch
            loss += (1.0 - c_ij) ** 2 if i == j else lambda_ * c_ij**2
    return loss


def finite_differences(f, x, eps=1e-6):
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return numeric


@pytest.mark.parametrize("batch,dim,lambda_", [(2, 3, 0.0051), (5, 4, 0.5), (16, 6, 0.0)])
def test_values_match_reference(rng, batch, dim, lambda_):
    x = rng.normal(size=(batch, 2, dim))
    values = barlow_twins_loss(None, x.astype("float32"), lambda_)
    assert values.shape == (batch,) and values.dtype == "float32"
    expected = reference(x, lambda_)
    np.testing.assert_allclose(values, np.full(batch, expected), rtol=1e-5, atol=1e-6)
    loss = BarlowTwinsLoss(lambda_)(None, x.astype("float32"))
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_defaults_are_the_papers():
    loss = BarlowTwinsLoss()
    assert loss.lambda_ == 0.0051 and loss.name == "barlow_twins_loss"
    assert contract_of(loss) == LossContract(labels="ignored", y_pred="pair")


@pytest.mark.parametrize("constant_feature", [False, True])
def test_gradients_match_finite_differences_of_reference(rng, constant_feature):
    x = rng.normal(size=(4, 2, 3))
    if constant_feature:
        x[:, 0, 1] = 2.5  # no variance: the epsilon keeps the standardization smooth
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(barlow_twins_loss(None, variable, 0.3))
    np.testing.assert_allclose(loss, reference(x, 0.3), rtol=1e-9)
    numeric = finite_differences(lambda x: reference(x, 0.3), x)
    np.testing.assert_allclose(tape.gradient(loss, variable), numeric, rtol=1e-5, atol=1e-7)


def test_float32_gradients_match_float64(rng):
    x = rng.normal(size=(6, 2, 5))
    grads = []
    for dtype in ("float32", "float64"):
        variable = tf.Variable(x.astype(dtype))
        with tf.GradientTape() as tape:
            loss = BarlowTwinsLoss(0.1)(None, variable)
        grads.append(tape.gradient(loss, variable).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_identical_decorrelated_views_reach_the_minimum():
    # Orthogonal ±1 columns of zero mean: standardized already, and the cross-correlation
    # is the identity up to the epsilon (C_ii = 1 / sqrt(1 + 1e-5)²).
    columns = np.array([[1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], "float32").T
    x = np.stack([columns, columns], axis=1)
    loss = BarlowTwinsLoss()(None, x)
    np.testing.assert_allclose(loss, 3 * (1e-5 / (1 + 1e-5)) ** 2, atol=1e-9)
    np.testing.assert_allclose(loss, reference(x), atol=1e-9)
    shuffled = np.stack([columns, columns[::-1]], axis=1)
    assert float(BarlowTwinsLoss()(None, shuffled)) > 1.0


def test_constant_features_standardize_to_zero(rng):
    x = rng.normal(size=(6, 2, 4)).astype("float32")
    x[:, :, 2] = 1e5  # constant in both views: C_22 = 0 exactly, as in float64
    x[:, 1, 0] = -3.0
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = BarlowTwinsLoss()(None, variable)
    np.testing.assert_allclose(loss, reference(x), rtol=1e-5)
    assert np.all(np.isfinite(tape.gradient(loss, variable)))
    # Every feature constant: C = 0, the loss is D (one per diagonal entry).
    constant = np.broadcast_to(x[:1], x.shape)
    np.testing.assert_allclose(BarlowTwinsLoss()(None, constant), 4.0, rtol=1e-6)


@pytest.mark.parametrize("offset,scale", [(1e6, 1e2), (1e20, 1e18), (0.0, 1e37)])
def test_large_values_match_reference(rng, offset, scale):
    x = (offset + scale * rng.normal(size=(8, 2, 3))).astype("float32")
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = BarlowTwinsLoss(0.2)(None, variable)
    np.testing.assert_allclose(loss, reference(x, 0.2), rtol=1e-5)
    assert np.all(np.isfinite(tape.gradient(loss, variable)))


@settings(max_examples=20, deadline=None)
@given(
    x=hnp.arrays(
        "float32", (4, 2, 3), elements=st.floats(allow_nan=False, allow_infinity=False, width=32)
    ),
    duplicated=st.booleans(),
)
def test_finite_for_any_finite_input(x, duplicated):
    if duplicated:
        x = np.broadcast_to(x[:1], x.shape).copy()
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = BarlowTwinsLoss()(None, variable)
    # |C_ij| <= 1: at most 4 per diagonal entry and λ per off-diagonal one.
    assert np.isfinite(float(loss)) and 0.0 <= float(loss) <= 4 * 3 + 0.0051 * 6
    np.testing.assert_allclose(loss, reference(x), rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(tape.gradient(loss, variable)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_compute_in_float32(rng, dtype):
    half = tf.cast(rng.normal(size=(6, 2, 4)), dtype)
    values = barlow_twins_loss(None, half)
    assert values.dtype == "float32"
    expected = reference(tf.cast(half, "float64").numpy())
    np.testing.assert_allclose(values, np.full(6, expected), rtol=1e-5)


def test_eager_graph_and_xla_agree(rng):
    x = rng.normal(size=(6, 2, 5)).astype("float32")
    loss = BarlowTwinsLoss(0.1)
    eager = loss(None, x)
    graph = tf.function(lambda x: loss(None, x), autograph=False)(x)
    xla = tf.function(lambda x: loss(None, x), jit_compile=True, autograph=False)(x)
    np.testing.assert_allclose(graph, eager, rtol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-5)


def test_reductions_and_sample_weights(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    expected = reference(x, 0.1)
    np.testing.assert_allclose(BarlowTwinsLoss(0.1, reduction="sum")(None, x), 4 * expected, 1e-5)
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    weighted = BarlowTwinsLoss(0.1)(None, x, sample_weight=weights)
    np.testing.assert_allclose(weighted, expected * weights.sum() / 4, rtol=1e-5)


def test_dict_y_pred_is_accepted_and_unknown_state_refused(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    loss = BarlowTwinsLoss()
    np.testing.assert_allclose(loss(None, {"embeddings": x}), loss(None, x))
    with pytest.raises(ValueError, match="accepted keys"):
        loss(None, {"embeddings": x, "temperature": 0.1})


def test_config_and_serialization_round_trip(rng):
    loss = BarlowTwinsLoss(lambda_=0.02, reduction="sum", name="bt")
    assert loss.get_config()["lambda_"] == 0.02
    clone = BarlowTwinsLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is BarlowTwinsLoss and revived.get_config() == loss.get_config()
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    np.testing.assert_allclose(revived(None, x), loss(None, x))


def test_compiles_fits_and_survives_keras_saving(rng, tmp_path):
    inputs = keras.Input((2, 4))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=BarlowTwinsLoss(0.02))
    x, y = rng.normal(size=(8, 2, 4)).astype("float32"), np.zeros(8, "int32")
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored.loss) is BarlowTwinsLoss
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=8, verbose=0),
        model.evaluate(x, y, batch_size=8, verbose=0),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "lambda_,error", [(-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError)]
)
def test_bad_lambda_is_refused(lambda_, error):
    with pytest.raises(error, match="lambda_"):
        BarlowTwinsLoss(lambda_=lambda_)
    with pytest.raises(error, match="lambda_"):
        barlow_twins_loss(None, np.zeros((2, 2, 3), "float32"), lambda_)


def test_bad_inputs_are_refused(rng):
    loss = BarlowTwinsLoss()
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 3)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 3, 2)).astype("float32"))
    with pytest.raises(ValueError, match="at least 2"):
        loss(None, rng.normal(size=(1, 2, 3)).astype("float32"))
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    x[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        loss(None, x)


@pytest.mark.parametrize("sizes", [(4, 4), (2, 2, 2, 2), (5, 3)], ids=["2", "4", "uneven"])
def test_replicas_sum_to_the_single_device_value_and_gradient(rng, sizes):
    x = rng.normal(size=(8, 2, 3)).astype("float32")

    def fn(x):
        return barlow_twins_loss(None, x, 0.3)

    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        expected = tf.reduce_mean(fn(variable))
    expected_grad = tape.gradient(expected, variable)
    np.testing.assert_allclose(expected, reference(x, 0.3), rtol=1e-5)
    total, grad = replica_sum(fn, x, sizes)
    np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)
