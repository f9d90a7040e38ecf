import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import LogitScale


def test_initial_scale_and_temperature():
    layer = LogitScale(initial_temperature=0.07)
    np.testing.assert_allclose(layer.log_scale.numpy(), math.log(1 / 0.07), rtol=1e-6)
    np.testing.assert_allclose(layer.scale, 1 / 0.07, rtol=1e-5)
    np.testing.assert_allclose(layer.temperature, 0.07, rtol=1e-5)
    logits = np.array([[1.0, -2.0], [0.5, 0.0]], "float32")
    np.testing.assert_allclose(layer(logits), logits / 0.07, rtol=1e-5)


def test_learnable_flag():
    assert len(LogitScale(learnable=True).trainable_weights) == 1
    frozen = LogitScale(learnable=False)
    assert frozen.trainable_weights == []
    assert len(frozen.non_trainable_weights) == 1


def test_gradient_of_log_scale():
    layer = LogitScale(initial_temperature=0.5)
    logits = tf.constant([[1.0, 2.0], [3.0, -1.0]])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(logits))
    (grad,) = tape.gradient(out, [layer.log_scale])
    # d/dt sum(exp(t) * logits) = exp(t) * sum(logits) = 2 * 5.
    np.testing.assert_allclose(grad, 2.0 * 5.0, rtol=1e-5)


def test_clamped_at_max_scale_with_zero_gradient():
    layer = LogitScale(initial_temperature=0.1, max_scale=20.0)
    layer.log_scale.assign(math.log(50.0))
    np.testing.assert_allclose(layer.scale, 20.0, rtol=1e-6)
    np.testing.assert_allclose(layer.temperature, 0.05, rtol=1e-6)
    logits = tf.constant([[1.0, 2.0]])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(logits))
    np.testing.assert_allclose(out, 60.0, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(out, layer.log_scale), 0.0)


def test_config_and_keras_round_trip_keeps_learned_value(tmp_path):
    layer = LogitScale(initial_temperature=0.05, max_scale=50.0, learnable=False)
    config = layer.get_config()
    assert LogitScale.from_config(config).get_config() == config
    inputs = keras.Input((3,))
    model = keras.Model(inputs, LogitScale(name="scale")(inputs))
    model.get_layer("scale").log_scale.assign(1.5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.get_layer("scale").scale, math.exp(1.5), rtol=1e-6)
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"initial_temperature": 0.0}, "initial_temperature"),
        ({"initial_temperature": -0.1}, "initial_temperature"),
        ({"max_scale": 0.0}, "max_scale"),
        ({"initial_temperature": 0.001, "max_scale": 100.0}, "max_scale"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        LogitScale(**kwargs)


def test_non_numeric_temperature():
    with pytest.raises(TypeError, match="`initial_temperature`"):
        LogitScale(initial_temperature="0.07")
