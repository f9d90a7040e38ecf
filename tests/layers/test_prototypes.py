"""Prototypes: cosine logits against unit prototypes, or a plain product without normalization."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import Prototypes


def unit(x, axis=-1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def test_logits_are_cosines_with_each_prototype(rng):
    layer = Prototypes(num_prototypes=5)
    x = rng.normal(scale=3.0, size=(4, 3)).astype("float32")
    logits = layer(x)
    assert tuple(logits.shape) == (4, 5) and layer.kernel.shape == (3, 5)
    kernel = layer.kernel.numpy().astype("float64")
    want = [[unit(x[i]) @ unit(kernel[:, k]) for k in range(5)] for i in range(4)]
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(10.0 * x), logits, rtol=1e-5, atol=1e-6)  # scale-free


def test_without_normalization_the_kernel_scales_the_logits(rng):
    layer = Prototypes(num_prototypes=5, normalize=False)
    x = rng.normal(size=(4, 3)).astype("float32")
    np.testing.assert_allclose(layer(x), unit(x) @ layer.kernel.numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_reaches_the_kernel_and_is_finite_for_a_zero_input(rng):
    layer = Prototypes(num_prototypes=3)
    x = tf.constant(np.vstack([rng.normal(size=(2, 4)), np.zeros((1, 4))]).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) ** 2)
    grad_x, grad_kernel = tape.gradient(loss, [x, layer.kernel])
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_kernel))
    assert np.abs(grad_kernel).max() > 0


def test_config_and_keras_round_trip(tmp_path, rng):
    layer = Prototypes(num_prototypes=6, normalize=False, name="protos")
    config = layer.get_config()
    json.dumps(config)
    again = Prototypes.from_config(config)
    assert (again.num_prototypes, again.normalize, again.name) == (6, False, "protos")
    model = keras.Sequential([keras.Input((3,)), Prototypes(6)])
    model.save(tmp_path / "p.keras")
    restored = keras.models.load_model(tmp_path / "p.keras")
    x = rng.normal(size=(2, 3)).astype("float32")
    np.testing.assert_array_equal(restored(x), model(x))


def test_bad_arguments_and_inputs_are_refused():
    with pytest.raises(ValueError, match="`num_prototypes` must be an int >= 1"):
        Prototypes(0)
    with pytest.raises(TypeError, match="`normalize`"):
        Prototypes(4, normalize="yes")
    with pytest.raises(ValueError, match=r"takes \(B, D\) embeddings.*\(2, 3, 4\)"):
        Prototypes(4).build((2, 3, 4))
