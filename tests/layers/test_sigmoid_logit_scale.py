"""`SigmoidLogitScale`: the learnable (log scale, bias) pair that feeds SigLIPLoss."""

import keras
import numpy as np
import pytest
import references as ref
import tensorflow as tf

import keras_contrastive as kc
from keras_contrastive.layers import SigmoidLogitScale


def test_starts_at_the_siglip_initialisation():
    layer = SigmoidLogitScale()
    np.testing.assert_allclose(layer.log_scale, np.log(10.0), rtol=1e-6)
    np.testing.assert_allclose(layer.scale, 10.0, rtol=1e-6)
    np.testing.assert_allclose(layer.temperature, 0.1, rtol=1e-6)
    np.testing.assert_allclose(layer.bias, -10.0)
    similarities = np.array([[1.0, -0.5], [0.25, 0.0]], "float32")
    np.testing.assert_allclose(layer(similarities), similarities * 10.0 - 10.0, rtol=1e-6)


def test_learnable_flag_sets_trainability():
    assert len(SigmoidLogitScale().trainable_weights) == 2
    frozen = SigmoidLogitScale(learnable=False)
    assert not frozen.trainable_weights and len(frozen.non_trainable_weights) == 2


def test_loss_gradients_reach_both_weights_and_a_step_lowers_the_loss():
    x = np.random.default_rng(0).normal(size=(6, 2, 4))
    layer = SigmoidLogitScale(initial_temperature=0.5, initial_bias=0.0)
    optimizer = keras.optimizers.SGD(0.05)

    def loss_value():
        return tf.reduce_mean(kc.losses.siglip_loss(None, x, layer.temperature, layer.bias))

    with tf.GradientTape() as tape:
        before = loss_value()
    np.testing.assert_allclose(before, ref.siglip(x, 0.5, 0.0).mean(), rtol=1e-5)
    grads = tape.gradient(before, layer.trainable_weights)
    assert all(np.isfinite(g) and g != 0 for g in grads)
    optimizer.apply(grads, layer.trainable_weights)
    assert float(loss_value()) < float(before)


def test_config_round_trip_and_keras_saving(tmp_path):
    layer = SigmoidLogitScale(initial_temperature=0.2, initial_bias=-3.0, learnable=False)
    clone = SigmoidLogitScale.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((3,))
    model = keras.Model(inputs, SigmoidLogitScale(initial_bias=-2.0)(inputs))
    model.layers[-1].bias.assign(1.5)  # a trained value, not the initial one
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    x = np.array([[0.1, 0.2, -0.3]], "float32")
    np.testing.assert_allclose(restored(x), model(x), rtol=1e-6)
    np.testing.assert_allclose(restored.layers[-1].bias, 1.5)


@pytest.mark.parametrize(
    "kwargs,error,argument",
    [
        ({"initial_temperature": 0.0}, ValueError, "initial_temperature"),
        ({"initial_temperature": "0.1"}, TypeError, "initial_temperature"),
        ({"initial_bias": float("nan")}, ValueError, "initial_bias"),
        ({"initial_bias": None}, TypeError, "initial_bias"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        SigmoidLogitScale(**kwargs)
