"""`digits()`: scikit-learn's 8x8 handwritten digits, upscaled, with a fixed split."""

import collections

import numpy as np
import tensorflow as tf

from keras_contrastive.datasets.tf_data import check_int

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

Split = collections.namedtuple("Split", ["train", "test", "class_names"])
Split.__doc__ = """A train/test split: `train` and `test` are `(images, labels)` NumPy pairs.

`images` is float32 `(N, image_size, image_size, channels)` in [0, 1], `labels`
int32 `(N,)`; `class_names[label]` names a class.

Example:

>>> import keras_contrastive as kc
>>> split = kc.datasets.digits(image_size=8, channels=1)
>>> x_test, y_test = split.test  # (540, 8, 8, 1), (540,)
>>> split.class_names[y_test[0]]  # the English word for the first test label
"""


def digits(image_size=32, channels=3, test_size=0.3, seed=0):
    """Loads scikit-learn's handwritten digits as upscaled images with a stratified split.

    The 1,797 real 8x8 scans of the UCI handwritten digits (values 0..16),
    shipped inside scikit-learn, so nothing is downloaded. Pixels are divided by
    16 and the images upscaled to `image_size` with bilinear interpolation
    (smooth strokes; a convex combination of pixels, so values stay in [0, 1]),
    then the gray channel is repeated `channels` times. The split is
    `sklearn.model_selection.train_test_split(..., stratify=labels)`; with the
    defaults it is fixed (1,257 train / 540 test images, every class in the
    same proportion in both), so numbers are comparable between runs.

    Args:
        image_size: int >= 8, the height and width of the output images.
            Defaults to `32` (CIFAR-sized, for the reference encoders).
        channels: `1` (gray) or `3` (gray repeated as RGB). Defaults to `3`.
        test_size: float in (0, 1), the test fraction. Defaults to `0.3`.
        seed: int, the `random_state` of the split. Defaults to `0`.

    Returns:
        A `Split(train=(x, y), test=(x, y), class_names=DIGIT_NAMES)` of NumPy
        arrays: `x` float32 `(N, image_size, image_size, channels)` in [0, 1],
        `y` int32 `(N,)` in 0..9; `class_names` are the English digit words.
        Use `to_dataset` for a `tf.data.Dataset`.

    Raises:
        ImportError: when scikit-learn, which ships the digits, is not
            installed (`pip install scikit-learn`, or the `examples` extra).

    Example:

    >>> import keras_contrastive as kc
    >>> data = kc.datasets.digits()
    >>> x_train, y_train = data.train  # (1257, 32, 32, 3), (1257,)
    >>> train_ds = kc.datasets.to_dataset(x_train, y_train, batch_size=128, shuffle=True)

    References:
        - Alpaydin & Kaynak, 1998. "Optical Recognition of Handwritten Digits",
          UCI Machine Learning Repository. https://doi.org/10.24432/C50P49
    """
    check_int("image_size", image_size, 8)
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels!r}")
    if not isinstance(test_size, float) or not 0.0 < test_size < 1.0:
        raise ValueError(
            f"`test_size` must be a float in (0, 1). Received: test_size={test_size!r}"
        )
    check_int("seed", seed, 0)
    try:  # scikit-learn ships the data; optional, so imported here
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise ImportError(
            "`kc.datasets.digits()` needs scikit-learn, which ships the digits: "
            '`pip install scikit-learn`, or `pip install "keras-contrastive[examples]"`.'
        ) from error
    raw = load_digits()
    images = (raw.images / 16.0).astype("float32")[..., None]
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
    images = np.clip(np.repeat(images, channels, axis=-1), 0.0, 1.0)
    labels = raw.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    return Split(train=(x_train, y_train), test=(x_test, y_test), class_names=DIGIT_NAMES)
