"""`FusedBatchNormalization`: Keras batch normalization on TensorFlow's fused kernel."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="keras_contrastive")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that trains on image batches with one fused op.

    Keras 3 trains batch normalization with separate moment, normalization and
    update ops; tf-keras used TensorFlow's fused kernel (`FusedBatchNormV3`),
    which computes the batch statistics and the normalization in one pass. This
    layer is the Keras layer, same arguments, weights and results, except that a
    training step on `(B, H, W, C)` inputs normalized over the channels uses the
    fused kernel (TensorFlow's, because the speed of the TensorFlow backend is
    the point here). The moving statistics are updated as the parent does, with
    the biased batch variance. Anything else (inference, other ranks or axes,
    `synchronized`, `renorm`, masks) is the parent's code. Measured on CPU: the
    forward and backward pass of `small_cnn` about 1.5x faster
    (`benchmarks/RESULTS.md`); it also compiles with XLA.

    Args:
        **kwargs: the arguments of `keras.layers.BatchNormalization` (`axis=-1`,
            `momentum=0.99`, `epsilon=1e-3`, `center=True`, `scale=True`, ...).

    Shape:
        Any input shape; output shape = input shape.

    Example:

    >>> bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> bn(keras.ops.ones((2, 4, 4, 8)), training=True).shape  # (2, 4, 4, 8)

    References:
        - Ioffe & Szegedy, 2015. "Batch Normalization: Accelerating Deep Network
          Training by Reducing Internal Covariate Shift".
          https://arxiv.org/abs/1502.03167
    """

    def call(self, inputs, training=None, mask=None):
        if not (training is True and self.trainable and mask is None and self._fusable(inputs)):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = ops.cast(self.gamma, "float32") if self.scale else ops.ones((channels,))
        offset = ops.cast(self.beta, "float32") if self.center else ops.zeros((channels,))
        empty = tf.constant([], "float32")  # no running statistics: training mode
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16) else ops.cast(inputs, "float32")
        outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=scale,
            offset=offset,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        count = ops.cast(ops.size(inputs) // channels, "float32")
        variance = unbiased_variance * (count - 1.0) / ops.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs):
        return (
            len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and inputs.shape[-1] is not None
            and not self.synchronized
            and not self.renorm
        )
