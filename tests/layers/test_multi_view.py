import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import MultiView, SimCLRAugmentation

SIZE = 12


@pytest.fixture(scope="module")
def images():
    """Four copies of one colourful 16 x 16 uint8 image."""
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype="uint8")
    return np.repeat(image[None], 4, axis=0)


def _views(num_views=2, seed=0):
    return MultiView(SimCLRAugmentation(SIZE, seed=seed), num_views=num_views)


@pytest.mark.parametrize("num_views", [1, 2, 3])
def test_shapes_and_views_differ(images, num_views):
    layer = _views(num_views)
    out = layer(images).numpy()
    assert out.shape == (4, num_views, SIZE, SIZE, 3)
    assert layer(images[0]).shape == (num_views, SIZE, SIZE, 3)
    assert layer.compute_output_shape((None, 16, 16, 3)) == (None, num_views, SIZE, SIZE, 3)
    flat = out.reshape(4 * num_views, -1)
    assert all(not np.allclose(flat[i], flat[j]) for i in range(len(flat)) for j in range(i))


def test_seeded_views_reproduce(images):
    np.testing.assert_allclose(_views(seed=4)(images), _views(seed=4)(images))


def test_seed_override(images):
    seed = tf.constant([5, 6])
    a = _views(seed=1)(images, seed=seed).numpy()
    np.testing.assert_allclose(a, _views(seed=2)(images, seed=seed))
    assert not np.allclose(a[:, 0], a[:, 1])
    assert not np.allclose(a, _views(seed=1)(images, seed=tf.constant([5, 7])))


def test_inference_views_are_the_resized_image(images):
    out = _views()(images, training=False)
    np.testing.assert_allclose(out[:, 0], out[:, 1])


def test_tf_data_and_xla(images):
    layer = _views()
    ds = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
    assert [b.shape for b in ds] == [(3, 2, SIZE, SIZE, 3), (1, 2, SIZE, SIZE, 3)]
    step = tf.function(lambda x, s: layer(x, seed=s), jit_compile=True)
    seed = tf.constant([1, 2])
    np.testing.assert_allclose(step(images, seed), layer(images, seed=seed), atol=1e-4)


def test_config_rebuilds_the_augmenter():
    layer = MultiView(SimCLRAugmentation(SIZE, rotation=5, seed=3), num_views=3)
    clone = MultiView.from_config(layer.get_config())
    assert isinstance(clone.augmenter, SimCLRAugmentation)
    assert clone.augmenter.get_config() == layer.augmenter.get_config()
    assert clone.get_config() == layer.get_config()


def test_keras_save_round_trip(images, tmp_path):
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    model = keras.Model(inputs, _views(seed=2)(inputs))
    path = str(tmp_path / "views.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(images, training=True), model(images, training=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`num_views`"):
        MultiView(SimCLRAugmentation(SIZE), num_views=0)
    with pytest.raises(TypeError, match="`augmenter`"):
        MultiView(lambda x: x)
