"""Local TFDS data, on TFDS's own mock data (nothing is downloaded)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_contrastive as kc


def test_tfds_images_resizes_and_scales_batches():
    with tfds.testing.mock_data(num_examples=12):
        dataset, class_names = kc.datasets.tfds_images(
            "mnist", split="test", image_size=8, batch_size=5
        )
        batches = list(dataset.as_numpy_iterator())
    assert [len(labels) for _, labels in batches] == [5, 5, 2]
    images = np.concatenate([images for images, _ in batches])
    assert images.shape == (12, 8, 8, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert class_names == [str(digit) for digit in range(10)]


def test_tfds_split_has_the_layout_of_digits():
    with tfds.testing.mock_data(num_examples=7):
        split = kc.datasets.tfds_split("cifar10", image_size=(6, 4))
    (x_train, y_train), (x_test, y_test) = split.train, split.test
    assert x_train.shape == (7, 6, 4, 3) and x_test.shape == (7, 6, 4, 3)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert np.all((0 <= y_test) & (y_test < len(split.class_names)))
    assert len(split.class_names) == 10


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="`name` must be a TFDS dataset name"):
        kc.datasets.tfds_split("not_a_dataset_name")
