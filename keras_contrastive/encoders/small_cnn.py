"""`small_cnn`: a compact convolutional image encoder that trains fast on a CPU."""

import keras

from keras_contrastive.encoders._checks import check_image_shape, check_int
from keras_contrastive.encoders.fused_batch_normalization import FusedBatchNormalization
from keras_contrastive.ops._validation import check_bool

# Channel multipliers of the four conv blocks; a 2x2 max-pool follows the first three.
_WIDTH_MULTIPLIERS = (1, 2, 4, 4)


def small_cnn(input_shape=(32, 32, 3), width=32, batch_norm=True, name="small_cnn"):
    """A 4-block conv net with global average pooling: images to `(B, 4 * width)`.

    Each block is `Conv2D(3x3, "same") -> [FusedBatchNormalization] -> ReLU`, with
    `width`, `2 * width`, `4 * width` and `4 * width` filters; a 2x2 max-pool
    follows each of the first three blocks (32x32 -> 4x4), and global average
    pooling gives the representation. About 0.24 M parameters and 13 M
    multiply-adds per 32x32 image at `width=32`: the default encoder of the
    demos and tests (a VGG-style net, Simonyan & Zisserman 2015, shrunk).

    Args:
        input_shape: `(height, width, channels)`, images as float in [0, 1];
            height and width >= 8 (three 2x pools), or `None` for any size.
            Defaults to `(32, 32, 3)`.
        width: int > 0, the filters of the first block. Defaults to `32`.
        batch_norm: bool, whether each conv is followed by batch normalization
            (`FusedBatchNormalization`, then without bias). Defaults to `True`:
            in SimCLR on `digits()` it reached a slightly higher kNN accuracy
            after the same number of epochs (`benchmarks/small_cnn_batch_norm.py`);
            fused, it costs a few percent of the step time on CPU
            (`benchmarks/fused_batch_norm.py`). Use `False` where batch
            statistics must not depend on how a batch is split (the
            distribution tests).
        name: str, the model name. Defaults to `"small_cnn"`.

    Shape:
        Input `(batch_size, height, width, channels)`; output
        `(batch_size, 4 * width)`.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> encoder = small_cnn(input_shape=(32, 32, 3))
    >>> encoder(keras.ops.zeros((2, 32, 32, 3))).shape  # (2, 128)

    References:
        - Simonyan & Zisserman, 2015. "Very Deep Convolutional Networks for
          Large-Scale Image Recognition". https://arxiv.org/abs/1409.1556
        - Ioffe & Szegedy, 2015. "Batch Normalization". https://arxiv.org/abs/1502.03167
    """
    check_image_shape(input_shape, minimum=8)
    check_int("width", width)
    check_bool("batch_norm", batch_norm)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for block, multiplier in enumerate(_WIDTH_MULTIPLIERS, start=1):
        x = keras.layers.Conv2D(
            width * multiplier, 3, padding="same", use_bias=not batch_norm, name=f"conv{block}"
        )(x)
        if batch_norm:
            x = FusedBatchNormalization(name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        if block < len(_WIDTH_MULTIPLIERS):
            x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=name)
