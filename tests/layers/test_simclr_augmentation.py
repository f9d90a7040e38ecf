import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from keras_contrastive.layers import SimCLRAugmentation, _image_ops

SIZE = 16
NO_COLOUR = {"jitter_rate": 0.0, "grayscale_rate": 0.0, "blur_rate": 0.0}
NO_CROP = {"crop_area": (1.0, 1.0), "aspect_ratio": (1.0, 1.0), "flip_rate": 0.0}


@pytest.fixture(scope="module")
def images():
    """Eight copies of one colourful 24 x 24 uint8 image."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (24, 24, 3), dtype="uint8")
    return np.repeat(image[None], 8, axis=0)


def _all_pairs_differ(batch):
    batch = np.asarray(batch).reshape(len(batch), -1)
    return all(
        not np.allclose(batch[i], batch[j], atol=1e-4) for i in range(len(batch)) for j in range(i)
    )


@pytest.mark.parametrize("dtype, value_range", [("uint8", (0, 255)), ("float32", (0.0, 1.0))])
def test_output_shape_dtype_and_range(images, dtype, value_range):
    x = images.astype(dtype) / (1 if dtype == "uint8" else 255.0)
    layer = SimCLRAugmentation(SIZE, value_range=value_range, seed=0)
    out = layer(x)
    assert out.shape == (8, SIZE, SIZE, 3) and out.dtype == "float32"
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
    assert layer(x[0]).shape == (SIZE, SIZE, 3)
    assert layer.compute_output_shape((None, 24, 24, 3)) == (None, SIZE, SIZE, 3)


def test_single_channel_and_noise_rotation_shear_solarize(images):
    layer = SimCLRAugmentation(
        (SIZE, 12), noise_stddev=0.1, rotation=30, shear=0.3, solarize_rate=0.5, seed=0
    )
    out = layer(images[..., :1])
    assert out.shape == (8, SIZE, 12, 1)
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
    assert _all_pairs_differ(out)


@pytest.mark.parametrize("options", [NO_COLOUR, NO_CROP], ids=["crop", "colour"])
def test_each_image_gets_its_own_transform(images, options):
    out = SimCLRAugmentation(SIZE if options is NO_COLOUR else 24, seed=0, **options)(images)
    assert _all_pairs_differ(out)


def test_bernoulli_choices_are_per_image():
    image = np.random.default_rng(2).uniform(size=(1, 8, 8, 3)).astype("float32")
    layer = SimCLRAugmentation(
        8, value_range=(0, 1), grayscale_rate=0.5, jitter_rate=0.0, seed=0, **NO_CROP
    )
    out = layer(np.repeat(image, 64, axis=0)).numpy()
    gray = np.all(np.ptp(out, axis=-1) < 1e-5, axis=(1, 2))
    assert 16 <= gray.sum() <= 48  # Binomial(64, 0.5): far outside all-or-none.


def test_seed_reproduces_and_calls_differ(images):
    first, second = SimCLRAugmentation(SIZE, seed=7), SimCLRAugmentation(SIZE, seed=7)
    a = first(images)
    np.testing.assert_allclose(a, second(images))
    assert not np.allclose(a, first(images))


def test_seed_override_replaces_the_generator(images):
    seed = tf.constant([3, 4])
    a = SimCLRAugmentation(SIZE, seed=1)(images, seed=seed)
    b = SimCLRAugmentation(SIZE, seed=2)(images, seed=seed)
    np.testing.assert_allclose(a, b)
    other = SimCLRAugmentation(SIZE, seed=1)(images, seed=tf.constant([3, 5]))
    assert not np.allclose(a, other)


def test_inference_only_resizes_and_rescales(images):
    layer = SimCLRAugmentation(24, seed=0)
    np.testing.assert_allclose(layer(images, training=False), images / 255.0, atol=1e-6)
    assert layer(images, training=False).shape == (8, 24, 24, 3)
    small = SimCLRAugmentation(12)(images, training=False)
    expected = images.reshape(8, 12, 2, 12, 2, 3).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(small, expected, atol=1e-5)


@pytest.mark.parametrize("flip_rate", [0.0, 1.0])
def test_full_crop_is_identity_or_mirror(images, flip_rate):
    options = {**NO_COLOUR, **NO_CROP, "flip_rate": flip_rate}
    out = SimCLRAugmentation(24, seed=0, **options)(images)
    expected = images[:, :, ::-1] if flip_rate else images
    np.testing.assert_allclose(out, expected / 255.0, atol=1e-6)


def test_crop_boxes_respect_area_and_aspect_ratio():
    rng = np.random.default_rng(0)
    u = [rng.uniform(size=s).astype("float32") for s in ((500, 10), (500, 10), (500, 2))]
    y0, x0, h, w = (
        b.numpy()
        for b in _image_ops.sample_crop_boxes(
            *u, (0.08, 1.0), (3 / 4, 4 / 3), tf.constant([30.0, 40.0])
        )
    )
    assert np.all((y0 >= 0) & (x0 >= 0) & (y0 + h <= 1 + 1e-6) & (x0 + w <= 1 + 1e-6))
    fitted = (h < 1) | (w < 1)
    ratio = (w * 40) / (h * 30)
    assert np.all((0.08 - 1e-6 <= h * w) & (h * w <= 1 + 1e-6))
    assert np.all((ratio[fitted] >= 0.75 - 1e-5) & (ratio[fitted] <= 4 / 3 + 1e-5))
    assert np.ptp(h * w) > 0.5  # areas spread over the range


def _np_colour(x, b, c, s, h, order, gray):
    """Brightness, contrast, saturation, hue (YIQ) in `order`, then grayscale."""
    luma = np.array([0.299, 0.587, 0.114])
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    theta = 2 * np.pi * h
    rot = np.array(
        [[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]]
    )
    steps = [
        lambda x: x * b,
        lambda x: c * (x - x.mean(axis=(0, 1))) + x.mean(axis=(0, 1)),
        lambda x: s * x + (1 - s) * (x @ luma)[..., None],
        lambda x: x @ (np.linalg.inv(yiq) @ rot @ yiq).T,
    ]
    for k in order:
        x = steps[k](x)
    return np.repeat((x @ luma)[..., None], 3, axis=-1) if gray else x


def test_colour_matrix_matches_numpy_reference():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(3, 5, 6, 3)).astype("float32")
    b, c, s = (rng.uniform(0.2, 1.8, size=3).astype("float32") for _ in range(3))
    h = rng.uniform(-0.2, 0.2, size=3).astype("float32")
    order = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]])
    gray = np.array([False, True, False])
    matrix = _image_ops.colour_matrix(x, b, c, s, h, order, gray)
    out = _image_ops.apply_colour_matrix(x, matrix)
    for i in range(3):
        expected = _np_colour(x[i], b[i], c[i], s[i], h[i], order[i], gray[i])
        np.testing.assert_allclose(out[i], expected, atol=1e-4)


def test_gaussian_blur_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(3, 9, 11, 2)).astype("float32")
    sigma = np.array([0.5, 2.0, 0.0], dtype="float32")
    out = _image_ops.gaussian_blur(x, sigma, radius=3)
    for i in range(2):
        taps = np.arange(-3, 4)
        kernel = np.exp(-(taps**2) / (2 * sigma[i] ** 2))
        kernel /= kernel.sum()
        expected = ndimage.correlate1d(x[i], kernel, axis=0, mode="mirror")
        expected = ndimage.correlate1d(expected, kernel, axis=1, mode="mirror")
        np.testing.assert_allclose(out[i], expected, atol=1e-5)
    np.testing.assert_allclose(out[2], x[2], atol=1e-6)


def test_transposed_layout_gives_the_same_crop_and_blur():
    """The layer's fast path (crop left transposed, blur taking it back) is exact."""
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(3, 9, 11, 3)).astype("float32")
    boxes = tuple(
        np.array(b, dtype="float32")
        for b in ([0.1, 0.0, 0.3], [0.2, 0.4, 0.0], [0.5, 0.6, 0.7], [0.8, 0.5, 0.9])
    )
    flip = np.array([True, False, True])
    crop = _image_ops.crop_resize(x, boxes, flip, (7, 10))
    transposed = _image_ops.crop_resize(x, boxes, flip, (7, 10), transposed=True)
    assert transposed.shape == (3, 10, 7, 3)
    np.testing.assert_allclose(_image_ops.swap_axes(transposed), crop, atol=1e-6)
    sigma = np.array([0.5, 2.0, 0.0], dtype="float32")
    blurred = _image_ops.gaussian_blur(crop, sigma, radius=2)
    from_transposed = _image_ops.gaussian_blur(transposed, sigma, radius=2, transposed=True)
    np.testing.assert_allclose(from_transposed, blurred, atol=1e-6)


def test_non_square_views_are_blurred_along_both_axes(images):
    """Whole-image crop to 20 x 28, blur sigma 1 on every image, against SciPy."""
    options = {"jitter_rate": 0.0, "grayscale_rate": 0.0, **NO_CROP}
    layer = SimCLRAugmentation((20, 28), blur_rate=1.0, blur_sigma=(1.0, 1.0), seed=0, **options)
    out = np.asarray(layer(images))
    resized = np.asarray(layer(images, training=False))
    kernel = np.exp(-(np.arange(-1, 2) ** 2) / 2.0)  # radius 20 // 20 = 1
    expected = ndimage.correlate1d(resized, kernel / kernel.sum(), axis=1, mode="mirror")
    expected = ndimage.correlate1d(expected, kernel / kernel.sum(), axis=2, mode="mirror")
    assert out.shape == (8, 20, 28, 3)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_blur_rate_one_blurs_every_image(images):
    options = {"jitter_rate": 0.0, "grayscale_rate": 0.0, **NO_CROP}
    sharp = SimCLRAugmentation(40, blur_rate=0.0, seed=0, **options)(images)
    blurred = SimCLRAugmentation(40, blur_rate=1.0, blur_sigma=(1.0, 2.0), seed=0, **options)(
        images
    )
    roughness = lambda t: np.abs(np.diff(np.asarray(t), axis=1)).mean(axis=(1, 2, 3))  # noqa: E731
    assert np.all(roughness(blurred) < roughness(sharp))


def test_cifar_preset():
    layer = SimCLRAugmentation.cifar(seed=3)
    assert layer.image_size == (32, 32)
    assert (layer.jitter_strength, layer.blur_rate) == (0.5, 0.0)
    assert SimCLRAugmentation.cifar(blur_rate=0.5).blur_rate == 0.5


def test_tf_data_batched_and_unbatched(images):
    layer = SimCLRAugmentation(SIZE, noise_stddev=0.05, rotation=10, seed=0)
    unbatched = tf.data.Dataset.from_tensor_slices(images).map(layer).batch(4)
    batched = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
    assert [b.shape[0] for b in unbatched] == [4, 4]
    out = list(batched)
    assert [b.shape for b in out] == [(3, SIZE, SIZE, 3)] * 2 + [(2, SIZE, SIZE, 3)]
    assert _all_pairs_differ(tf.concat(out, axis=0))


def test_xla_in_a_model_step_and_with_seed(images):
    inputs = keras.Input((24, 24, 3))
    x = SimCLRAugmentation(SIZE, seed=0)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse", jit_compile=True)
    history = model.fit(images.astype("float32"), np.zeros((8, 2)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    layer = SimCLRAugmentation(SIZE, rotation=10, shear=0.1, noise_stddev=0.1)
    step = tf.function(lambda x, s: layer(x, seed=s), jit_compile=True)
    seed = tf.constant([1, 2])
    np.testing.assert_allclose(step(images, seed), layer(images, seed=seed), atol=1e-4)


def test_config_round_trip():
    layer = SimCLRAugmentation((20, 24), value_range=(-1.0, 1.0), rotation=5, seed=3)
    clone = SimCLRAugmentation.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_keras_save_round_trip(images, tmp_path):
    inputs = keras.Input((24, 24, 3), dtype="uint8")
    model = keras.Model(inputs, SimCLRAugmentation(SIZE, seed=5)(inputs))
    path = str(tmp_path / "aug.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False))
    np.testing.assert_allclose(loaded(images, training=True), model(images, training=True))


@pytest.mark.parametrize(
    "shape, match",
    [((24, 24), "images"), ((1, 1, 24, 24, 3), "images"), ((2, 24, 24, 4), "channels")],
)
def test_bad_image_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        SimCLRAugmentation(SIZE)(np.zeros(shape, "uint8"))


def test_bad_image_dtype_and_value_range():
    with pytest.raises(TypeError, match="images"):
        SimCLRAugmentation(SIZE)(np.zeros((2, 8, 8, 3), bool))
    with pytest.raises(ValueError, match="value_range"):
        SimCLRAugmentation(SIZE, value_range=(0, 1))(np.zeros((2, 8, 8, 3), "uint8"))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"crop_area": (0.0, 1.0)}, "crop_area"),
        ({"crop_area": (0.5, 1.5)}, "crop_area"),
        ({"crop_area": (0.9, 0.5)}, "crop_area"),
        ({"aspect_ratio": (0.0, 1.0)}, "aspect_ratio"),
        ({"value_range": (1, 1)}, "value_range"),
        ({"blur_sigma": 1.0}, "blur_sigma"),
        ({"flip_rate": 1.5}, "flip_rate"),
        ({"jitter_rate": -0.1}, "jitter_rate"),
        ({"grayscale_rate": 2}, "grayscale_rate"),
        ({"blur_rate": -1}, "blur_rate"),
        ({"solarize_rate": 1.1}, "solarize_rate"),
        ({"jitter_strength": -1.0}, "jitter_strength"),
        ({"noise_stddev": -0.1}, "noise_stddev"),
        ({"image_size": (0, 4)}, "image_size"),
        ({"image_size": (4, 4, 4)}, "image_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    kwargs = {"image_size": SIZE, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        SimCLRAugmentation(**kwargs)


# ------------------------------------------------ value range and empty images
def _contrastive_model(augmenter):
    import keras_contrastive as kc

    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=4, batch_norm=False),
        augmenter=augmenter,
    )
    model.compile(optimizer="sgd")
    return model


def test_images_above_value_range_are_refused_eagerly_in_tf_data_and_fit(images):
    x = images.astype("float32")  # [0, 255] values
    match = r"values up to 25\d but value_range=\(0, 1\): pass value_range=\(0, 255\)"
    layer = SimCLRAugmentation(SIZE, value_range=(0, 1), seed=0)
    with pytest.raises(ValueError, match=match):
        layer(x)
    with pytest.raises(ValueError, match=match):
        layer(x, training=False)
    in_graph = r"outside value_range=\(0, 1\).*\(0, 255\) for \[0, 255\] values.*\n*.*25\d"
    with pytest.raises(tf.errors.InvalidArgumentError, match=in_graph):
        list(tf.data.Dataset.from_tensor_slices(x).batch(4).map(layer))
    with pytest.raises(tf.errors.InvalidArgumentError, match=in_graph):
        _contrastive_model(layer).fit(x, batch_size=4, epochs=1, verbose=0)
    below = SimCLRAugmentation(SIZE, value_range=(0, 1), seed=0)
    match = r"down to -1 but value_range=\(0, 1\): pass value_range=\(-1, 1\)"
    with pytest.raises(ValueError, match=match):
        below(x / 127.5 - 1.0)  # [-1, 1] images


def test_unit_images_with_the_0_255_range_warn_once(images):
    x = images.astype("float32") / 255.0
    layer = SimCLRAugmentation(SIZE, seed=0)
    with pytest.warns(UserWarning, match=r"values up to 1.*value_range=\(0, 255\).*\(0, 1\)"):
        dark = layer(x)
    assert float(tf.reduce_max(dark)) < 0.02  # what the warning is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)  # once per layer
        SimCLRAugmentation(SIZE)(np.zeros((2, 24, 24, 3), "float32"))  # all black: no hint
        SimCLRAugmentation(SIZE)(images)  # uint8 in (0, 255)
        SimCLRAugmentation(SIZE, value_range=(0, 1))(x)
        # Graphs cannot warn (a host print does not compile with XLA): they run.
        list(tf.data.Dataset.from_tensor_slices(x).batch(4).map(SimCLRAugmentation(SIZE)))


def test_empty_images_are_refused_naming_the_shape():
    layer = SimCLRAugmentation(SIZE, seed=0)
    with pytest.raises(ValueError, match=r"height and width.*images.shape=\(2, 0, 0, 3\)"):
        layer(np.zeros((2, 0, 0, 3), "uint8"))
    step = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="height and width"):
        step(tf.zeros((2, 0, 5, 3), tf.uint8))
    assert step(tf.zeros((0, 24, 24, 3), tf.uint8)).shape == (0, SIZE, SIZE, 3)  # no images
