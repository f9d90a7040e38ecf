"""BYOLLoss and SimSiamLoss against a float64 NumPy reference: values, gradients, numerics."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_contrastive.losses._base import LossContract, contract_of
from keras_contrastive.losses.prediction_losses import (
    BYOLLoss,
    SimSiamLoss,
    byol_loss,
    simsiam_loss,
)


def cosine(p, z):
    """Row by row, with loops; a zero vector has cosine 0 with anything."""
    out = []
    for a, b in zip(np.asarray(p, np.float64), np.asarray(z, np.float64), strict=True):
        norms = np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(b * b))
        out.append(0.0 if norms == 0 else float(np.sum(a * b)) / norms)
    return np.array(out)


def reference(name, x):
    """`(B,)` values of rows `x[:, 0]` (predictions) against `x[:, 1]` (targets)."""
    c = cosine(x[:, 0], x[:, 1])
    return 2.0 - 2.0 * c if name == "byol" else -c


def reference_gradient(name, x):
    """d mean(loss) / d prediction, by the formula: −(z/(|p||z|) − cos·p/|p|²) per row."""
    p, z = np.asarray(x[:, 0], np.float64), np.asarray(x[:, 1], np.float64)
    norm_p = np.linalg.norm(p, axis=-1, keepdims=True)
    norm_z = np.linalg.norm(z, axis=-1, keepdims=True)
    c = cosine(p, z)[:, None]
    d_cos = z / (norm_p * norm_z) - c * p / norm_p**2
    return (2.0 if name == "byol" else 1.0) * -d_cos / len(x)


LOSSES = {"byol": (BYOLLoss, byol_loss), "simsiam": (SimSiamLoss, simsiam_loss)}


@pytest.fixture(params=sorted(LOSSES))
def name(request):
    return request.param


@pytest.mark.parametrize("batch,dim", [(1, 3), (5, 4), (16, 7)])
def test_values_match_reference(name, rng, batch, dim):
    loss_class, fn = LOSSES[name]
    x = rng.normal(scale=2.0, size=(batch, 2, dim))
    values = fn(None, x.astype("float32"))
    assert values.shape == (batch,) and values.dtype == "float32"
    np.testing.assert_allclose(values, reference(name, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        loss_class()(None, x.astype("float32")), reference(name, x).mean(), rtol=1e-5, atol=1e-6
    )


def test_known_values():
    rows = np.array(
        [[[1.0, 0.0], [3.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [-2.0, -2.0]]],
        "float32",
    )
    np.testing.assert_allclose(byol_loss(None, rows), [0.0, 2.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(simsiam_loss(None, rows), [-1.0, 0.0, 1.0], atol=1e-6)


def test_gradient_reaches_the_prediction_only(name, rng):
    _, fn = LOSSES[name]
    x = rng.normal(size=(6, 2, 5))
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(fn(None, variable))
    gradient = tape.gradient(loss, variable).numpy()
    np.testing.assert_allclose(gradient[:, 0], reference_gradient(name, x), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(gradient[:, 1], 0.0)  # stop_gradient on the target

    # The formula is the derivative of the reference (central differences, target fixed).
    eps, numeric = 1e-6, np.zeros_like(x[:, 0])
    for index in np.ndindex(numeric.shape):
        step = np.zeros_like(x)
        step[(index[0], 0, index[1])] = eps
        high, low = reference(name, x + step).mean(), reference(name, x - step).mean()
        numeric[index] = (high - low) / (2 * eps)
    np.testing.assert_allclose(gradient[:, 0], numeric, rtol=1e-5, atol=1e-8)


def test_float32_gradients_match_float64(name, rng):
    loss_class, _ = LOSSES[name]
    x = rng.normal(size=(6, 2, 5))
    grads = []
    for dtype in ("float32", "float64"):
        variable = tf.Variable(x.astype(dtype))
        with tf.GradientTape() as tape:
            loss = loss_class(dtype=dtype)(None, variable)
        grads.append(tape.gradient(loss, variable).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_zero_vectors_are_finite_and_score_cosine_zero(name):
    _, fn = LOSSES[name]
    x = np.array([[[0.0, 0.0], [1.0, 2.0]], [[3.0, -1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    variable = tf.Variable(x.astype("float32"))
    with tf.GradientTape() as tape:
        values = fn(None, variable)
    np.testing.assert_allclose(values, reference(name, x))  # 2 (BYOL) or 0 (SimSiam) each
    np.testing.assert_allclose(values, np.full(3, 2.0 if name == "byol" else 0.0))
    assert np.all(np.isfinite(tape.gradient(values, variable)))


@pytest.mark.parametrize("scale", [1e-30, 1e30, 3e38])
def test_extreme_scales_keep_the_value(name, rng, scale):
    _, fn = LOSSES[name]
    x = rng.normal(size=(4, 2, 3))
    variable = tf.Variable((x / np.abs(x).max() * scale).astype("float32"))
    with tf.GradientTape() as tape:
        values = fn(None, variable)
    np.testing.assert_allclose(values, reference(name, x), rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(tape.gradient(values, variable)))


@settings(max_examples=25, deadline=None)
@given(
    x=hnp.arrays(
        "float32", (3, 2, 4), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)
    )
)
def test_finite_for_any_finite_input(x):
    variable = tf.Variable(x)
    for fn, low, high in ((byol_loss, 0.0, 4.0), (simsiam_loss, -1.0, 1.0)):
        with tf.GradientTape() as tape:
            values = fn(None, variable)
        assert np.all(values >= low - 1e-5) and np.all(values <= high + 1e-5)
        assert np.all(np.isfinite(tape.gradient(values, variable)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_compute_in_float32(name, rng, dtype):
    _, fn = LOSSES[name]
    half = tf.cast(rng.normal(size=(6, 2, 4)), dtype)
    values = fn(None, half)
    assert values.dtype == "float32"
    np.testing.assert_allclose(values, reference(name, tf.cast(half, "float64").numpy()), atol=1e-6)


def test_eager_graph_and_xla_agree(name, rng):
    loss = LOSSES[name][0]()
    x = rng.normal(size=(6, 2, 5)).astype("float32")
    eager = loss(None, x)
    graph = tf.function(lambda x: loss(None, x), autograph=False)(x)
    xla = tf.function(lambda x: loss(None, x), jit_compile=True, autograph=False)(x)
    np.testing.assert_allclose(graph, eager, rtol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-7)


def test_reductions_and_sample_weights(name, rng):
    loss_class, _ = LOSSES[name]
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    expected = reference(name, x)
    np.testing.assert_allclose(loss_class(reduction="sum")(None, x), expected.sum(), rtol=1e-5)
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    weighted = loss_class()(None, x, sample_weight=weights)
    np.testing.assert_allclose(weighted, np.sum(expected * weights) / 4, rtol=1e-5)


def test_dict_y_pred_is_accepted_and_unknown_state_refused(name, rng):
    loss = LOSSES[name][0]()
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    np.testing.assert_allclose(loss(None, {"embeddings": x}), loss(None, x))
    with pytest.raises(ValueError, match="accepted keys"):
        loss(None, {"embeddings": x, "temperature": 0.1})


def test_defaults_contract_and_serialization(name, rng):
    loss_class, _ = LOSSES[name]
    loss = loss_class()
    assert loss.name == f"{name}_loss" and loss.reduction == "sum_over_batch_size"
    assert contract_of(loss) == LossContract(labels="ignored", y_pred="pair")
    custom = loss_class(reduction="sum", name="custom")
    config = custom.get_config()
    assert loss_class.from_config(config).get_config() == config
    revived = keras.losses.deserialize(keras.losses.serialize(custom))
    assert type(revived) is loss_class and revived.get_config() == config
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    np.testing.assert_allclose(revived(None, x), custom(None, x))


def test_compiles_fits_and_survives_keras_saving(name, rng, tmp_path):
    inputs = keras.Input((2, 4))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSSES[name][0]())
    x, y = rng.normal(size=(8, 2, 4)).astype("float32"), np.zeros(8, "int32")
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0).history["loss"]
    assert history[-1] < history[0]
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored.loss) is LOSSES[name][0]
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=8, verbose=0),
        model.evaluate(x, y, batch_size=8, verbose=0),
        rtol=1e-6,
    )


def test_bad_inputs_are_refused(name, rng):
    loss = LOSSES[name][0]()
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 3)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        loss(None, rng.normal(size=(4, 3, 2)).astype("float32"))
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    x[1, 1, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        loss(None, x)
