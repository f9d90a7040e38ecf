"""`resnet`: ResNet image encoders (CIFAR ResNet-18, or ResNet-50/101/152 of keras.applications)."""

import os

import keras

from keras_contrastive.encoders._checks import check_image_shape
from keras_contrastive.encoders.fused_batch_normalization import FusedBatchNormalization

_APPLICATIONS = {
    50: keras.applications.ResNet50,
    101: keras.applications.ResNet101,
    152: keras.applications.ResNet152,
}
DEPTHS = (18, *_APPLICATIONS)


def _conv_bn(x, filters, kernel_size, strides, name):
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    return FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)


def _basic_block(x, filters, strides, name):
    """Two 3x3 convs with a residual connection (He et al., 2016, Fig. 2 left)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_shortcut")
    x = keras.layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, filters, 3, strides, f"{name}_1"))
    x = _conv_bn(x, filters, 3, 1, f"{name}_2")
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def _cifar_resnet18(input_shape, name):
    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.ReLU(name="stem_relu")(_conv_bn(inputs, 64, 3, 1, "stem"))
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in (1, 2):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, filters, strides, f"stage{stage}_block{block}")
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet(input_shape=(32, 32, 3), depth=18, weights=None, name=None):
    """A ResNet image encoder with global average pooling: images to `(B, 512)` or `(B, 2048)`.

    `depth=18` is the CIFAR form of ResNet-18 used by SimCLR for 32x32 images
    (Chen et al., 2020, Appendix B.9): a 3x3 stride-1 stem without max-pool,
    then four stages of two basic blocks (64, 128, 256, 512 filters), written
    here because `keras.applications` has no ResNet-18. `depth=50`, `101` and
    `152` are `keras.applications.ResNet50/101/152` (ImageNet form: 7x7
    stride-2 stem and max-pool) with `include_top=False, pooling="avg"`.
    Nothing is ever downloaded: `weights` is `None` (random init) or a local
    weights file.

    Args:
        input_shape: `(height, width, channels)`; height and width >= 32 for
            depths 50-152, or `None` for any size with `depth=18`. Defaults to
            `(32, 32, 3)`.
        depth: one of `18`, `50`, `101`, `152`. Defaults to `18`.
        weights: `None` or the path of a weights file (`.weights.h5`) to load,
            e.g. ImageNet weights downloaded beforehand for depths 50-152.
            Defaults to `None`.
        name: str or `None`, the model name. Defaults to `None`
            (`"resnet{depth}"`).

    Shape:
        Input `(batch_size, height, width, channels)`; output
        `(batch_size, 512)` for depth 18, `(batch_size, 2048)` otherwise.

    Returns:
        A functional `keras.Model`. Depths 50-152 expect inputs preprocessed
        as `keras.applications.resnet.preprocess_input` when given ImageNet
        weights.

    Example:

    >>> encoder = resnet(input_shape=(32, 32, 3), depth=18)
    >>> encoder(keras.ops.zeros((2, 32, 32, 3))).shape  # (2, 512)

    References:
        - He et al., 2016. "Deep Residual Learning for Image Recognition".
          https://arxiv.org/abs/1512.03385
        - Chen et al., 2020. "A Simple Framework for Contrastive Learning of
          Visual Representations" (CIFAR ResNet, Appendix B.9).
          https://arxiv.org/abs/2002.05709
    """
    if depth not in DEPTHS or isinstance(depth, bool):
        raise ValueError(f"`depth` must be one of {list(DEPTHS)}. Received: depth={depth!r}")
    check_image_shape(input_shape, minimum=1 if depth == 18 else 32)
    if weights is not None and not (isinstance(weights, str) and os.path.isfile(weights)):
        raise ValueError(
            "`weights` must be None or the path of an existing weights file (nothing is "
            f"downloaded). Received: weights={weights!r}"
        )
    name = name or f"resnet{depth}"
    if depth == 18:
        model = _cifar_resnet18(tuple(input_shape), name)
        if weights is not None:
            model.load_weights(weights)
        return model
    return _APPLICATIONS[depth](
        include_top=False, weights=weights, input_shape=tuple(input_shape), pooling="avg", name=name
    )
