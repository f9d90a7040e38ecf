import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import L2Normalize


def test_unit_norm_matches_numpy(rng):
    x = rng.normal(size=(4, 3, 5)).astype("float32")
    for axis in (-1, 1):
        expected = x / np.linalg.norm(x, axis=axis, keepdims=True)
        np.testing.assert_allclose(L2Normalize(axis=axis)(x), expected, rtol=1e-5)


def test_zero_vector_stays_zero():
    np.testing.assert_array_equal(L2Normalize()(np.zeros((2, 3), "float32")), 0.0)


def test_in_tf_data_map(rng):
    x = rng.normal(size=(6, 4)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices(x).batch(3).map(L2Normalize())
    out = np.concatenate(list(ds.as_numpy_iterator()))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)


def test_config_and_keras_round_trip(tmp_path, rng):
    layer = L2Normalize(axis=1, name="norm")
    assert L2Normalize.from_config(layer.get_config()).get_config() == layer.get_config()
    inputs = keras.Input((3, 2))
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(2, 3, 2)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    assert loaded.get_layer("norm").axis == 1


def test_bad_axis():
    with pytest.raises(TypeError, match="`axis`"):
        L2Normalize(axis=1.5)
    with pytest.raises(ValueError, match="`axis`"):
        L2Normalize(axis=3)(np.ones((2, 3), "float32"))
