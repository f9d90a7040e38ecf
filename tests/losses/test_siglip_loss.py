"""SigLIPLoss against a loop-based NumPy reference: values, gradients, edge cases."""

import keras
import numpy as np
import pytest
import references as ref
import tensorflow as tf

from keras_contrastive.losses import SigLIPLoss, siglip_loss

IDS = np.array([0, 0, 1, 2, 2, 2], "int32")


@pytest.mark.parametrize(
    "batch,dim,temperature,bias",
    [(2, 3, 0.1, -10.0), (5, 4, 0.5, 0.0), (9, 6, 1.0, 2.5)],
)
def test_values_match_reference(rng, batch, dim, temperature, bias):
    x = rng.normal(size=(batch, 2, dim))
    values = siglip_loss(None, x.astype("float32"), temperature, bias)
    np.testing.assert_allclose(values, ref.siglip(x, temperature, bias), rtol=1e-5, atol=1e-5)
    # The class mean is the paper's normalisation: the sum over all pairs / B.
    mean = SigLIPLoss(temperature, bias)(None, x.astype("float32"))
    np.testing.assert_allclose(mean, ref.siglip(x, temperature, bias).sum() / batch, rtol=1e-5)


def test_group_ids_make_every_pair_in_a_group_a_match(rng):
    x = rng.normal(size=(6, 2, 4))
    loss = SigLIPLoss(0.2, -1.0, use_group_ids=True)
    expected = ref.siglip(x, 0.2, -1.0, IDS).mean()
    np.testing.assert_allclose(loss(IDS, x.astype("float32")), expected, rtol=1e-5)
    # Without use_group_ids the labels are ignored: only i == j matches.
    plain = SigLIPLoss(0.2, -1.0)(IDS, x.astype("float32"))
    np.testing.assert_allclose(plain, ref.siglip(x, 0.2, -1.0).mean(), rtol=1e-5)


def _finite_differences(f, x, eps=1e-6):
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return numeric


@pytest.mark.parametrize("group_ids", [None, IDS], ids=["pairs", "groups"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_gradients_match_finite_differences_of_reference(rng, group_ids, chunk_size):
    x = rng.normal(size=(6, 2, 3))
    temperature, bias = 0.3, -1.5
    variables = [tf.Variable(x), tf.Variable(temperature, dtype="float64")]
    variables.append(tf.Variable(bias, dtype="float64"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(siglip_loss(group_ids, *variables, chunk_size=chunk_size))
    grad_x, grad_t, grad_b = tape.gradient(loss, variables)
    np.testing.assert_allclose(loss, ref.siglip(x, temperature, bias, group_ids).mean(), rtol=1e-9)

    def mean(x=x, t=temperature, b=bias):
        return ref.siglip(x, t, b, group_ids).mean()

    np.testing.assert_allclose(grad_x, _finite_differences(mean, x), rtol=1e-5, atol=1e-7)
    numeric_t = _finite_differences(lambda t: mean(t=t), np.array(temperature))
    numeric_b = _finite_differences(lambda b: mean(b=b), np.array(bias))
    np.testing.assert_allclose(grad_t, numeric_t, rtol=1e-5)
    np.testing.assert_allclose(grad_b, numeric_b, rtol=1e-5)


def test_matched_pairs_score_lower_than_shuffled_pairs(rng):
    x = rng.normal(size=(8, 1, 16)).astype("float32")
    matched = np.concatenate([x, x], axis=1)
    shuffled = np.concatenate([x, x[::-1]], axis=1)
    loss = SigLIPLoss()
    assert float(loss(None, matched)) < float(loss(None, shuffled))


def test_eager_graph_and_xla_agree(rng):
    x = rng.normal(size=(6, 2, 5)).astype("float32")
    loss = SigLIPLoss(0.2, -3.0, use_group_ids=True)
    eager = loss(IDS, x)
    graph = tf.function(lambda x: loss(IDS, x))(x)
    xla = tf.function(lambda x: loss(IDS, x), jit_compile=True)(x)
    np.testing.assert_allclose(graph, eager, rtol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_compute_in_float32(rng, dtype):
    half = tf.cast(rng.normal(size=(6, 2, 5)), dtype)
    values = siglip_loss(None, half)
    assert values.dtype == "float32"
    np.testing.assert_allclose(values, siglip_loss(None, tf.cast(half, "float32")), rtol=1e-6)


@pytest.mark.parametrize("kind", ["zero", "duplicated", "huge"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_finite_for_degenerate_inputs(kind, chunk_size):
    x = np.random.default_rng(5).normal(size=(6, 2, 3)).astype("float32")
    x = {
        "zero": np.zeros_like(x),
        "duplicated": np.broadcast_to(x[:1], x.shape).copy(),
        "huge": np.sign(x) * 3e38,
    }[kind]
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = SigLIPLoss(0.01, 50.0, chunk_size=chunk_size)(None, variable)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(tape.gradient(loss, variable)))


def test_config_round_trip(rng):
    loss = SigLIPLoss(0.25, -4.0, use_group_ids=True, chunk_size=2, name="sig")
    config = loss.get_config()
    assert config["bias"] == -4.0 and config["temperature"] == 0.25
    clone = SigLIPLoss.from_config(config)
    assert clone.get_config() == config
    x = rng.normal(size=(6, 2, 3)).astype("float32")
    np.testing.assert_allclose(clone(IDS, x), loss(IDS, x))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(revived) is SigLIPLoss and revived.get_config() == config


def test_fits_and_survives_keras_saving(tmp_path):
    inputs = keras.Input((2, 4))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SigLIPLoss(0.5, -1.0))
    x = np.random.default_rng(0).normal(size=(6, 2, 4)).astype("float32")
    y = np.zeros(6, "int32")
    history = model.fit(x, y, batch_size=6, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=6, verbose=0),
        model.evaluate(x, y, batch_size=6, verbose=0),
        rtol=1e-6,
    )


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ValueError, match="temperature"):
        SigLIPLoss(temperature=temperature)


@pytest.mark.parametrize("bias", [float("nan"), float("inf")])
def test_bias_must_be_finite(bias):
    with pytest.raises(ValueError, match="`bias` must be a finite number"):
        SigLIPLoss(bias=bias)
    with pytest.raises(ValueError, match="bias"):
        siglip_loss(None, np.ones((2, 2, 3), "float32"), bias=bias)


def test_bad_inputs_are_refused(rng):
    x = rng.normal(size=(6, 2, 3)).astype("float32")
    with pytest.raises(ValueError, match="at least 2"):
        SigLIPLoss()(None, x[:1])
    with pytest.raises(ValueError, match="y_pred"):
        SigLIPLoss()(None, x[:, 0])
    with pytest.raises(ValueError, match="y_pred"):
        SigLIPLoss()(None, rng.normal(size=(6, 3, 3)).astype("float32"))
    with pytest.raises(ValueError, match="y_true"):
        SigLIPLoss(use_group_ids=True)(IDS[:-1], x)
    with pytest.raises(TypeError, match="y_true"):
        SigLIPLoss(use_group_ids=True)(IDS.astype("float32"), x)
    with pytest.raises(ValueError, match="needs labels"):
        SigLIPLoss(use_group_ids=True)(None, x)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        SigLIPLoss()(None, bad)
