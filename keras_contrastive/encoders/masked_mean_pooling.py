"""`MaskedMeanPooling`: the mean of a sequence over its real (unpadded) positions."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_contrastive")
class MaskedMeanPooling(keras.layers.Layer):
    """Averages a sequence over the positions where `padding_mask` is True.

    A row with no real position gives zeros (not NaN).

    Args:
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        `inputs` `(batch_size, length, dim)` and `padding_mask`
        `(batch_size, length)` bool; output `(batch_size, dim)`.

    Example:

    >>> pool = MaskedMeanPooling()
    >>> x = keras.ops.array([[[1.0], [3.0], [100.0]]])
    >>> pool(x, padding_mask=keras.ops.array([[True, True, False]]))  # [[2.0]]

    References:
        - Reimers & Gurevych, 2019. "Sentence-BERT: Sentence Embeddings using
          Siamese BERT-Networks" (mean pooling). https://arxiv.org/abs/1908.10084
    """

    def call(self, inputs, padding_mask):
        weights = ops.expand_dims(ops.cast(padding_mask, inputs.dtype), -1)
        total = ops.sum(inputs * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
