import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.encoders import FusedBatchNormalization

OPTIONS = {"momentum": 0.9, "epsilon": 1e-5}


def reference(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon):
    """Training-mode batch normalization over the last axis, in float64 NumPy."""
    x = x.astype("float64")
    axes = tuple(range(x.ndim - 1))
    mean, variance = x.mean(axes), x.var(axes)  # biased, as Keras
    y = gamma * (x - mean) / np.sqrt(variance + epsilon) + beta
    new_mean = momentum * moving_mean + (1 - momentum) * mean
    new_variance = momentum * moving_variance + (1 - momentum) * variance
    return y, new_mean, new_variance


def layers_with_same_weights(rng, **kwargs):
    fused = FusedBatchNormalization(**OPTIONS, **kwargs)
    plain = keras.layers.BatchNormalization(**OPTIONS, **kwargs)
    for layer in (fused, plain):
        layer.build((None, 5, 5, 3))
    # Variances must be positive: draw every weight, then take absolute values.
    weights = [np.abs(rng.normal(size=w.shape)) + 0.1 for w in plain.weights]
    for layer in (fused, plain):
        layer.set_weights(weights)
    return fused, plain


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_training_step_matches_numpy_and_keras(rng, center, scale):
    fused, plain = layers_with_same_weights(rng, center=center, scale=scale)
    x = (3 + 2 * rng.normal(size=(4, 5, 5, 3))).astype("float32")
    gamma = fused.gamma.numpy() if scale else 1.0
    beta = fused.beta.numpy() if center else 0.0
    y, mean, variance = reference(
        x, gamma, beta, fused.moving_mean.numpy(), fused.moving_variance.numpy(), **OPTIONS
    )
    out = fused(x, training=True)
    np.testing.assert_allclose(out, y, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(fused.moving_variance, variance, rtol=1e-5)
    np.testing.assert_allclose(out, plain(x, training=True), atol=1e-4)
    np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-5)


def test_gradients_match_keras_under_xla(rng):
    fused, plain = layers_with_same_weights(rng)
    x = tf.constant(rng.normal(size=(4, 5, 5, 3)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(4, 5, 5, 3)).astype("float32"))

    def gradients(layer):
        @tf.function(jit_compile=True)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * upstream)
            return tape.gradient(loss, [x, layer.gamma, layer.beta])

        return step(x)

    for ours, theirs in zip(gradients(fused), gradients(plain), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_inference_and_other_ranks_are_the_parent_layer(rng):
    fused, plain = layers_with_same_weights(rng)
    x = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-6)
    flat = FusedBatchNormalization()
    flat_plain = keras.layers.BatchNormalization()
    v = rng.normal(size=(6, 3)).astype("float32")
    np.testing.assert_allclose(flat(v, training=True), flat_plain(v, training=True), atol=1e-6)


def test_mixed_float16_keeps_the_compute_dtype(rng):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        fused = FusedBatchNormalization()
    finally:
        keras.mixed_precision.set_global_policy(previous)
    x = (100 * rng.normal(size=(4, 5, 5, 3))).astype("float16")
    out = fused(x, training=True)
    assert out.dtype == "float16"
    y, _, _ = reference(x, 1.0, 0.0, 0.0, 1.0, 0.99, 1e-3)
    np.testing.assert_allclose(out, y, atol=1e-2)


def test_config_round_trip_and_keras_file(tmp_path, rng):
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, center=False)
    restored = FusedBatchNormalization.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    inputs = keras.Input((5, 5, 3))
    model = keras.Model(inputs, layer(inputs))
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    model(x, training=True)  # moves the moving statistics
    model.save(tmp_path / "bn.keras")
    loaded = keras.models.load_model(tmp_path / "bn.keras")
    assert isinstance(loaded.layers[-1], FusedBatchNormalization)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
