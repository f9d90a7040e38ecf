"""Tests for `small_cnn`."""

import keras
import numpy as np
import pytest

from keras_contrastive.datasets import digits
from keras_contrastive.encoders import small_cnn


@pytest.fixture(scope="module")
def few_digits():
    x, y = digits().train
    return x[:128], y[:128]


def _classifier(encoder):
    outputs = keras.layers.Dense(10)(encoder.output)
    model = keras.Model(encoder.input, outputs)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss)
    return model


@pytest.mark.parametrize("batch_norm", [True, False])
def test_shapes_and_layers(batch_norm):
    encoder = small_cnn(width=8, batch_norm=batch_norm)
    assert encoder(np.zeros((3, 32, 32, 3), "float32")).shape == (3, 32)
    has_bn = any(isinstance(layer, keras.layers.BatchNormalization) for layer in encoder.layers)
    assert has_bn == batch_norm
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 16, 32, 32]
    assert all(c.use_bias != batch_norm for c in convs)


def test_any_image_size_and_channels():
    encoder = small_cnn(input_shape=(None, None, 1), width=4)
    assert encoder(np.zeros((2, 40, 24, 1), "float32")).shape == (2, 16)
    assert encoder(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 16)


def test_output_is_spatial_mean_of_last_block():
    encoder = small_cnn(width=4, batch_norm=False)
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    last = keras.Model(encoder.input, encoder.get_layer("relu4").output)(images)
    np.testing.assert_allclose(encoder(images), np.mean(last, axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_trains_and_round_trips_through_keras_file(few_digits, tmp_path):
    x, y = few_digits
    encoder = small_cnn(width=8)
    model = _classifier(encoder)
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    path = str(tmp_path / "small_cnn.keras")
    encoder.save(path)
    restored = keras.models.load_model(path)
    assert restored.name == "small_cnn"
    # Identical outputs in inference mode (moving BN statistics included).
    np.testing.assert_array_equal(restored.predict(x, verbose=0), encoder.predict(x, verbose=0))
    # The restored encoder keeps training.
    _classifier(restored).fit(x, y, batch_size=32, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"input_shape": (4, 32, 3)}, "input_shape"),
        ({"input_shape": (32, 32, 0)}, "input_shape"),
        ({"width": 0}, "width"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        small_cnn(**kwargs)
