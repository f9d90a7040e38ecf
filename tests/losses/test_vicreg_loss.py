"""VICRegLoss against a loop-based float64 NumPy reference: values, gradients, replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import replica_sum
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_contrastive.losses._base import LossContract, contract_of
from keras_contrastive.losses.vicreg_loss import VICRegLoss, vicreg_loss


def reference(x, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """The official code in float64, as `(B,)` values: example i's MSE plus the batch terms."""
    x = np.asarray(x, np.float64)
    batch, _, dim = x.shape

    def variance_term(z):
        z = z - z.mean(axis=0)
        std = np.sqrt(np.array([np.sum(z[:, j] ** 2) / (batch - 1) for j in range(dim)]) + 1e-4)
        return np.mean(np.maximum(0.0, 1.0 - std))

    def covariance_term(z):
        z = z - z.mean(axis=0)
        total = 0.0
        for i in range(dim):
            for j in range(dim):
                if i != j:
                    total += (np.sum(z[:, i] * z[:, j]) / (batch - 1)) ** 2
        return total / dim

    first, second = x[:, 0], x[:, 1]
    invariance = np.array([np.mean((first[k] - second[k]) ** 2) for k in range(batch)])
    variance = (variance_term(first) + variance_term(second)) / 2
    covariance = covariance_term(first) + covariance_term(second)
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


def finite_differences(f, x, eps=1e-6):
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return numeric


@pytest.mark.parametrize(
    "batch,dim,coeffs",
    [(2, 3, (25.0, 25.0, 1.0)), (5, 4, (1.0, 2.0, 3.0)), (16, 6, (0.0, 1.0, 0.0))],
)
def test_values_match_reference(rng, batch, dim, coeffs):
    x = rng.normal(scale=0.7, size=(batch, 2, dim))
    values = vicreg_loss(None, x.astype("float32"), *coeffs)
    assert values.shape == (batch,) and values.dtype == "float32"
    np.testing.assert_allclose(values, reference(x, *coeffs), rtol=1e-5, atol=1e-6)
    loss = VICRegLoss(*coeffs)(None, x.astype("float32"))
    np.testing.assert_allclose(loss, reference(x, *coeffs).mean(), rtol=1e-5, atol=1e-6)


def test_defaults_are_the_papers():
    loss = VICRegLoss()
    assert (loss.sim_coeff, loss.std_coeff, loss.cov_coeff) == (25.0, 25.0, 1.0)
    assert loss.name == "vicreg_loss"
    assert contract_of(loss) == LossContract(labels="ignored", y_pred="pair")


def test_each_term_alone(rng):
    x = rng.normal(size=(6, 2, 4)).astype("float32")
    mse = np.mean((x[:, 0].astype(np.float64) - x[:, 1]) ** 2, axis=-1)
    np.testing.assert_allclose(vicreg_loss(None, x, 1.0, 0.0, 0.0), mse, rtol=1e-6)
    # The batch terms are shared: every example gets the same share of them.
    batch_terms = vicreg_loss(None, x, 0.0, 2.0, 3.0)
    np.testing.assert_allclose(batch_terms, np.full(6, batch_terms[0]))
    np.testing.assert_allclose(batch_terms, reference(x, 0.0, 2.0, 3.0), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.5, 2.0], ids=["hinge_active", "hinge_inactive"])
@pytest.mark.parametrize("constant_feature", [False, True])
def test_gradients_match_finite_differences_of_reference(rng, scale, constant_feature):
    x = rng.normal(scale=scale, size=(4, 2, 3))
    if constant_feature:
        x[:, 1, 2] = -1.5  # no variance: std = sqrt(1e-4), still differentiable
    coeffs = (2.0, 3.0, 0.5)
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(vicreg_loss(None, variable, *coeffs))
    np.testing.assert_allclose(loss, reference(x, *coeffs).mean(), rtol=1e-9)
    numeric = finite_differences(lambda x: reference(x, *coeffs).mean(), x)
    np.testing.assert_allclose(tape.gradient(loss, variable), numeric, rtol=1e-5, atol=1e-7)


def test_float32_gradients_match_float64(rng):
    x = rng.normal(size=(6, 2, 5))
    grads = []
    for dtype in ("float32", "float64"):
        variable = tf.Variable(x.astype(dtype))
        with tf.GradientTape() as tape:
            loss = VICRegLoss()(None, variable)
        grads.append(tape.gradient(loss, variable).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_identical_decorrelated_views_with_unit_spread_cost_nothing():
    # Orthogonal ±s columns of zero mean: no MSE, no covariance, std >= 1 (s = 1.2).
    columns = 1.2 * np.array([[1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], "float32").T
    x = np.stack([columns, columns], axis=1)
    np.testing.assert_allclose(VICRegLoss()(None, x), 0.0, atol=1e-6)
    np.testing.assert_allclose(vicreg_loss(None, x), reference(x), atol=1e-6)
    collapsed = np.ones_like(x)
    assert float(VICRegLoss()(None, collapsed)) > 20.0


def test_constant_features_keep_the_loss_finite(rng):
    x = np.broadcast_to(rng.normal(size=(1, 2, 4)), (6, 2, 4)).astype("float32")
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = VICRegLoss()(None, variable)
    # No covariance; std = sqrt(1e-4) = 0.01 for every feature; the MSE of the two constants.
    mse = np.mean((x[0, 0].astype(np.float64) - x[0, 1]) ** 2)
    np.testing.assert_allclose(loss, 25.0 * mse + 25.0 * 0.99, rtol=1e-6)
    assert np.all(np.isfinite(tape.gradient(loss, variable)))


@pytest.mark.parametrize("offset,scale", [(1e4, 1e3), (1e7, 1e5), (0.0, 1e8)])
def test_large_values_match_reference(rng, offset, scale):
    x = (offset + scale * rng.normal(size=(8, 2, 3))).astype("float32")
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = VICRegLoss()(None, variable)
    np.testing.assert_allclose(loss, reference(x).mean(), rtol=1e-5)
    assert np.all(np.isfinite(tape.gradient(loss, variable)))


@settings(max_examples=20, deadline=None)
@given(
    x=hnp.arrays("float32", (4, 2, 3), elements=st.floats(-1e8, 1e8, width=32)),
    duplicated=st.booleans(),
)
def test_finite_for_any_finite_input_up_to_1e8(x, duplicated):
    if duplicated:
        x = np.broadcast_to(x[:1], x.shape).copy()
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = VICRegLoss()(None, variable)
    assert np.isfinite(float(loss)) and float(loss) >= 0.0
    assert np.all(np.isfinite(tape.gradient(loss, variable)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_compute_in_float32(rng, dtype):
    half = tf.cast(rng.normal(size=(6, 2, 4)), dtype)
    values = vicreg_loss(None, half)
    assert values.dtype == "float32"
    np.testing.assert_allclose(values, reference(tf.cast(half, "float64").numpy()), rtol=1e-5)


def test_eager_graph_and_xla_agree(rng):
    x = rng.normal(size=(6, 2, 5)).astype("float32")
    loss = VICRegLoss(2.0, 3.0, 4.0)
    eager = loss(None, x)
    graph = tf.function(lambda x: loss(None, x), autograph=False)(x)
    xla = tf.function(lambda x: loss(None, x), jit_compile=True, autograph=False)(x)
    np.testing.assert_allclose(graph, eager, rtol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-5)


def test_reductions_and_sample_weights(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    expected = reference(x)
    np.testing.assert_allclose(VICRegLoss(reduction="sum")(None, x), expected.sum(), rtol=1e-5)
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    weighted = VICRegLoss()(None, x, sample_weight=weights)
    np.testing.assert_allclose(weighted, np.sum(expected * weights) / 4, rtol=1e-5)


def test_dict_y_pred_is_accepted_and_unknown_state_refused(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    loss = VICRegLoss()
    np.testing.assert_allclose(loss(None, {"embeddings": x}), loss(None, x))
    with pytest.raises(ValueError, match="accepted keys"):
        loss(None, {"embeddings": x, "temperature": 0.1})


def test_config_and_serialization_round_trip(rng):
    loss = VICRegLoss(sim_coeff=10.0, std_coeff=5.0, cov_coeff=0.5, reduction="sum", name="v")
    config = loss.get_config()
    assert (config["sim_coeff"], config["std_coeff"], config["cov_coeff"]) == (10.0, 5.0, 0.5)
    clone = VICRegLoss.from_config(config)
    assert clone.get_config() == config
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is VICRegLoss and revived.get_config() == config
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    np.testing.assert_allclose(revived(None, x), loss(None, x))


def test_compiles_fits_and_survives_keras_saving(rng, tmp_path):
    inputs = keras.Input((2, 4))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=VICRegLoss(cov_coeff=2.0))
    x, y = rng.normal(size=(8, 2, 4)).astype("float32"), np.zeros(8, "int32")
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored.loss) is VICRegLoss
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=8, verbose=0),
        model.evaluate(x, y, batch_size=8, verbose=0),
        rtol=1e-6,
    )


@pytest.mark.parametrize("argument", ["sim_coeff", "std_coeff", "cov_coeff"])
@pytest.mark.parametrize(
    "value,error", [(-1.0, ValueError), (float("inf"), ValueError), (None, TypeError)]
)
def test_bad_coefficients_are_refused(argument, value, error):
    with pytest.raises(error, match=argument):
        VICRegLoss(**{argument: value})
    with pytest.raises(error, match=argument):
        vicreg_loss(None, np.zeros((2, 2, 3), "float32"), **{argument: value})


def test_bad_inputs_are_refused(rng):
    loss = VICRegLoss()
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 3)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 3, 2)).astype("float32"))
    with pytest.raises(ValueError, match="at least 2"):
        loss(None, rng.normal(size=(1, 2, 3)).astype("float32"))
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    x[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        loss(None, x)


@pytest.mark.parametrize("sizes", [(4, 4), (2, 2, 2, 2), (5, 3)], ids=["2", "4", "uneven"])
def test_replicas_sum_to_the_single_device_value_and_gradient(rng, sizes):
    x = rng.normal(scale=0.8, size=(8, 2, 3)).astype("float32")

    def fn(x):
        return vicreg_loss(None, x, 2.0, 3.0, 0.5)

    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        expected = tf.reduce_mean(fn(variable))
    expected_grad = tape.gradient(expected, variable)
    np.testing.assert_allclose(expected, reference(x, 2.0, 3.0, 0.5).mean(), rtol=1e-5)
    total, grad = replica_sum(fn, x, sizes)
    np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-6)
