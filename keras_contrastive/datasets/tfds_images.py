"""`tfds_images`, `tfds_split`: classification images from a local TFDS copy, never downloaded."""

import numpy as np
import tensorflow as tf

from keras_contrastive.datasets.digits import Split
from keras_contrastive.datasets.image_folder import check_image_size
from keras_contrastive.datasets.tf_data import batch_and_prefetch, check_int

SHUFFLE_BUFFER = 10_000


def _import_tfds():
    """`tensorflow_datasets`, an optional dependency (the `tfds` extra)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Loading TFDS datasets needs tensorflow-datasets: "
            '`pip install "keras-contrastive[tfds]"` (or `pip install tensorflow-datasets`).'
        ) from error
    return tfds


def _download_hint(name, data_dir):
    where = "" if data_dir is None else f", data_dir={data_dir!r}"
    return (
        f"Download it once, where there is network access, with `tfds build {name}"
        f"{'' if data_dir is None else f' --data_dir={data_dir}'}` or "
        f"`tensorflow_datasets.load({name!r}{where})`."
    )


def tfds_images(
    name, split="train", image_size=32, batch_size=128, shuffle=False, seed=0, data_dir=None
):
    """Loads `(image, label)` batches of a TFDS dataset that is already on disk.

    Calls `tensorflow_datasets.load(name, download=False, as_supervised=True)`:
    nothing is ever downloaded. Images are resized with bilinear interpolation
    and scaled to float32 in [0, 1], as `digits()`; channels are kept as stored
    (1 for MNIST, 3 for CIFAR-10).

    Args:
        name: str, the TFDS name, e.g. `"cifar10"`, `"mnist"`.
        split: str, a TFDS split such as `"train"` or `"test[:10%]"`. Defaults
            to `"train"`.
        image_size: int or `(height, width)`. Defaults to `32`.
        batch_size: int > 0. Defaults to `128`.
        shuffle: bool, whether to shuffle, anew each epoch, through a buffer of
            `SHUFFLE_BUFFER` (10,000) examples. Defaults to `False`.
        seed: int, the shuffle seed. Defaults to `0`.
        data_dir: str or `None`, the TFDS data folder. Defaults to `None`
            (`~/tensorflow_datasets` or `$TFDS_DATA_DIR`).

    Returns:
        `(dataset, class_names)`: a `tf.data.Dataset` of `(images, labels)`
        batches, images float32 `(B, height, width, C)` and labels int64
        `(B,)`, and the class names of the dataset's `"label"` feature.

    Raises:
        ImportError: when tensorflow-datasets is not installed (the `tfds` extra).
        ValueError: when TFDS has no dataset called `name`.
        FileNotFoundError: when the dataset is not in `data_dir`; the message
            says how to download it.

    Example:

    >>> import keras_contrastive as kc
    >>> dataset, class_names = kc.datasets.tfds_images("cifar10", split="test")  # doctest: +SKIP
    """
    size = check_image_size(image_size)
    check_int("batch_size", batch_size, 1)
    tfds = _import_tfds()
    try:
        dataset, info = tfds.load(
            name, split=split, data_dir=data_dir, download=False, as_supervised=True, with_info=True
        )
    except tfds.core.DatasetNotFoundError as error:
        raise ValueError(f"`name` must be a TFDS dataset name. Received: name={name!r}") from error
    except AssertionError as error:  # what TFDS raises when the data is not prepared
        raise FileNotFoundError(
            f"The TFDS dataset {name!r} is not on disk (data_dir={data_dir!r}) and "
            f"`tfds_images` never downloads. {_download_hint(name, data_dir)}"
        ) from error

    def prepare(image, label):
        image = tf.image.resize(tf.cast(image, "float32") / 255.0, size, method="bilinear")
        return tf.clip_by_value(image, 0.0, 1.0), label

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = batch_and_prefetch(dataset, SHUFFLE_BUFFER, batch_size, shuffle, seed, False)
    return dataset, list(info.features["label"].names)


def tfds_split(name, image_size=32, data_dir=None):
    """The `"train"` and `"test"` splits of a local TFDS dataset, as NumPy arrays.

    The same layout as `digits()`, so that a script written for digits runs on
    any image classification dataset already on disk. Holds the whole dataset
    in memory: for small datasets (MNIST, CIFAR-10), not ImageNet.

    Args:
        name: str, the TFDS name, e.g. `"cifar10"`, `"mnist"`.
        image_size: int or `(height, width)`. Defaults to `32`.
        data_dir: str or `None`, the TFDS data folder. Defaults to `None`.

    Returns:
        A `Split(train=(x, y), test=(x, y), class_names)`: `x` float32
        `(N, height, width, C)` in [0, 1], `y` int32 `(N,)`.

    Raises:
        As `tfds_images` (never downloads).

    Example:

    >>> import keras_contrastive as kc
    >>> split = kc.datasets.tfds_split("cifar10", image_size=32)  # doctest: +SKIP
    >>> x_train, y_train = split.train  # doctest: +SKIP
    """
    arrays = []
    for split in ("train", "test"):
        dataset, class_names = tfds_images(
            name, split=split, image_size=image_size, batch_size=1024, data_dir=data_dir
        )
        images, labels = zip(*dataset.as_numpy_iterator(), strict=True)
        arrays.append((np.concatenate(images), np.concatenate(labels).astype("int32")))
    return Split(train=arrays[0], test=arrays[1], class_names=class_names)
