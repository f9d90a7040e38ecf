"""Tests for `image_folder` (a folder of PNGs written here) and `tfds_images` (never downloads)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_contrastive.datasets import image_folder, tfds_images

CLASSES = ("cat", "dog")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three 6x4 PNGs per class; a cat's pixels are all 0, a dog's all 255."""
    root = tmp_path_factory.mktemp("images")
    for value, name in zip((0, 255), CLASSES, strict=True):
        (root / name).mkdir()
        for i in range(3):
            pixels = np.full((6, 4, 3), value, dtype="uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return str(root)


def test_image_folder_labels_classes_and_scales(folder):
    dataset, class_names = image_folder(folder, image_size=(8, 5), batch_size=4, shuffle=False)
    assert class_names == list(CLASSES)
    batches = list(dataset.as_numpy_iterator())
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert [len(b[1]) for b in batches] == [4, 2]
    assert images.shape == (6, 8, 5, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
    # Each image is uniform at its class's value, scaled to [0, 1].
    np.testing.assert_allclose(images.max(axis=(1, 2, 3)), labels, atol=1e-6)
    np.testing.assert_allclose(images.min(axis=(1, 2, 3)), labels, atol=1e-6)


def test_image_folder_grayscale_and_shuffle(folder):
    dataset, _ = image_folder(folder, image_size=4, batch_size=6, channels=1, seed=1)
    images, labels = next(iter(dataset.as_numpy_iterator()))
    assert images.shape == (6, 4, 4, 1)
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(images[:, 0, 0, 0], labels, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"path": "/nonexistent/folder"}, "path"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": (8, 8, 3)}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"channels": 2}, "channels"),
    ],
)
def test_image_folder_bad_arguments(folder, kwargs, name):
    kwargs = {"path": folder, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        image_folder(**kwargs)


def test_tfds_images_missing_data_says_how_to_download(tmp_path):
    data_dir = str(tmp_path / "no_data_here")
    with pytest.raises(FileNotFoundError, match="'mnist'.*never downloads.*tfds build mnist"):
        tfds_images("mnist", data_dir=data_dir)
    assert not (tmp_path / "no_data_here" / "mnist").exists()  # nothing was fetched


def test_tfds_images_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="`name`.*not_a_dataset_xyz"):
        tfds_images("not_a_dataset_xyz", data_dir=str(tmp_path))


def test_tfds_images_resizes_and_scales(tmp_path):
    # TFDS's own test double: generated examples, no files and no network.
    with tfds.testing.mock_data(num_examples=10):
        dataset, class_names = tfds_images(
            "mnist", split="test", image_size=16, batch_size=4, data_dir=str(tmp_path)
        )
        batches = list(dataset.as_numpy_iterator())
    assert class_names == [str(i) for i in range(10)]
    assert [b[0].shape for b in batches] == [(4, 16, 16, 1), (4, 16, 16, 1), (2, 16, 16, 1)]
    images = np.concatenate([b[0] for b in batches])
    assert images.dtype == np.float32 and 0.0 <= images.min() and images.max() <= 1.0
    assert images.max() > 0.5  # random uint8 pixels, divided by 255
