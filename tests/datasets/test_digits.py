"""Tests for `digits()` and `to_dataset`."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_contrastive.datasets import DIGIT_NAMES, digits, to_dataset


@pytest.fixture(scope="module")
def data():
    return digits()


def test_sizes_dtypes_and_range(data):
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    assert x_train.shape == (1257, 32, 32, 3) and x_test.shape == (540, 32, 32, 3)
    assert y_train.shape == (1257,) and y_test.shape == (540,)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert x_train.max() == 1.0  # 16 maps to 1
    # Gray repeated as RGB.
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 2])
    assert list(data.class_names) == list(DIGIT_NAMES) and len(DIGIT_NAMES) == 10


def test_split_is_stratified_and_disjoint(data):
    counts_train = np.bincount(data.train[1], minlength=10)
    counts_test = np.bincount(data.test[1], minlength=10)
    total = counts_train + counts_test
    np.testing.assert_array_equal(total, np.bincount(load_digits().target))
    # Each class has ~30% of its images in the test split (stratified rounding).
    assert np.all(np.abs(counts_test - 0.3 * total) <= 1)


def test_split_is_fixed_between_calls(data):
    again = digits()
    np.testing.assert_array_equal(again.test[1], data.test[1])
    np.testing.assert_array_equal(again.train[0], data.train[0])


def test_native_size_matches_sklearn_pixels():
    raw = load_digits()
    small = digits(image_size=8, channels=1)
    images = np.concatenate([small.train[0], small.test[0]])[..., 0]
    labels = np.concatenate([small.train[1], small.test[1]])
    # Every 8x8 image is an original scan / 16, with its original label.
    lookup = {
        (img / 16.0).astype("float32").tobytes(): y
        for img, y in zip(raw.images, raw.target, strict=True)
    }
    assert len(images) == len(raw.images) == 1797
    assert all(lookup[img.tobytes()] == y for img, y in zip(images, labels, strict=True))


def _bilinear_reference(image, size):
    """Bilinear resize with half-pixel centres and clamped borders, in NumPy."""
    coords = (np.arange(size) + 0.5) * image.shape[0] / size - 0.5
    coords = np.clip(coords, 0, image.shape[0] - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, image.shape[0] - 1)
    frac = coords - low
    rows = image[low] * (1 - frac)[:, None] + image[high] * frac[:, None]
    return rows[:, low] * (1 - frac) + rows[:, high] * frac


def test_upscaling_is_bilinear(data):
    small = digits(image_size=8, channels=1)
    for small_image, image in zip(small.test[0][:5, ..., 0], data.test[0][:5, ..., 0], strict=True):
        np.testing.assert_allclose(image, _bilinear_reference(small_image, 32), atol=1e-5)


def test_to_dataset_batches_all_examples(data):
    x, y = data.test
    dataset = to_dataset(x, y, batch_size=128)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [128, 128, 128, 128, 28]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    np.testing.assert_array_equal(batches[0][0], x[:128])


def test_to_dataset_shuffles_each_epoch_and_drops_remainder(data):
    x = data.test[0][:50]
    dataset = to_dataset(x, batch_size=16, shuffle=True, seed=3, drop_remainder=True)
    epoch_1 = np.concatenate(list(dataset.as_numpy_iterator()))
    epoch_2 = np.concatenate(list(dataset.as_numpy_iterator()))
    assert epoch_1.shape == (48, 32, 32, 3)
    assert not np.array_equal(epoch_1, epoch_2)
    originals = {row.tobytes() for row in x}
    assert all(row.tobytes() in originals for row in epoch_1)


def test_to_dataset_turns_autotuning_off(data):
    """Arrays in memory have nothing to tune; an autotuned iterator's deletion can wait."""
    dataset = to_dataset(*data.test, batch_size=64, shuffle=True)
    assert dataset.options().autotune.enabled is False
    assert dataset.repeat().options().autotune.enabled is False  # kept downstream


def test_to_dataset_of_a_dict():
    x = {"a": np.arange(5), "b": np.arange(5) * 2}
    (batch,) = to_dataset(x, batch_size=8).as_numpy_iterator()
    np.testing.assert_array_equal(batch["b"], 2 * batch["a"])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"image_size": 4}, "image_size"),
        ({"image_size": 32.0}, "image_size"),
        ({"channels": 2}, "channels"),
        ({"test_size": 1.5}, "test_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_digits_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        digits(**kwargs)


def test_to_dataset_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="`batch_size`"):
        to_dataset(x, batch_size=0)
    with pytest.raises(ValueError, match="`x` and `y`"):
        to_dataset(x, np.zeros(3))
