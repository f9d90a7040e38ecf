"""`image_folder`: bring your own images, one sub-folder per class."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_contrastive.datasets.tf_data import check_int


def check_image_size(image_size):
    """`image_size` (an int or a `(height, width)` pair) as a pair of positive ints."""
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 1
    ):
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair of positive ints. "
            f"Received: image_size={image_size!r}"
        )
    return int(size[0]), int(size[1])


def rescale(images, labels):
    """Maps `[0, 255]` pixels to float32 in `[0, 1]`."""
    return tf.cast(images, "float32") / 255.0, labels


def image_folder(path, image_size=32, batch_size=128, channels=3, shuffle=True, seed=0):
    """Loads a folder of images with one sub-folder per class as a `tf.data.Dataset`.

    A thin wrapper of `keras.utils.image_dataset_from_directory`: sub-folder
    names, in alphabetical order, are the classes (labels 0, 1, ...); images
    (PNG, JPEG, BMP, GIF) are resized with bilinear interpolation and scaled
    to float32 in [0, 1], as `digits()`.

    Args:
        path: str, the folder holding one sub-folder of images per class.
        image_size: int or `(height, width)`, the output image size.
            Defaults to `32`.
        batch_size: int > 0. Defaults to `128`.
        channels: `1` (gray), `3` (RGB) or `4` (RGBA). Defaults to `3`.
        shuffle: bool, whether to shuffle the files, anew each epoch.
            Defaults to `True`.
        seed: int, the shuffle seed. Defaults to `0`.

    Returns:
        `(dataset, class_names)`: a `tf.data.Dataset` of `(images, labels)`
        batches, images float32 `(B, height, width, channels)` and labels int32
        `(B,)`, and the list of class names (the sub-folder names).

    Example:

    >>> import keras_contrastive as kc
    >>> data, names = kc.datasets.image_folder("my_photos/", image_size=64)  # doctest: +SKIP
    """
    size = check_image_size(image_size)
    check_int("batch_size", batch_size, 1)
    modes = {1: "grayscale", 3: "rgb", 4: "rgba"}
    if channels not in modes:
        raise ValueError(f"`channels` must be 1, 3 or 4. Received: channels={channels!r}")
    if not os.path.isdir(path):
        raise ValueError(
            "`path` must be a folder with one sub-folder of images per class. "
            f"Received: path={path!r}"
        )
    dataset = keras.utils.image_dataset_from_directory(
        path,
        labels="inferred",
        label_mode="int",
        color_mode=modes[channels],
        image_size=size,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        interpolation="bilinear",
        verbose=False,
    )
    class_names = list(dataset.class_names)
    dataset = dataset.map(rescale, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE), class_names
