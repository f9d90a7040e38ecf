"""`L2Normalize`: scales embeddings to unit L2 norm."""

import keras

from keras_contrastive.ops import l2_normalize
from keras_contrastive.ops._validation import check_int


@keras.saving.register_keras_serializable(package="keras_contrastive")
class L2Normalize(keras.layers.Layer):
    """Scales its input to unit L2 norm along `axis`.

    Overflow-safe and zero-safe (a zero vector stays zero), see
    `keras_contrastive.ops.l2_normalize`. Contrastive embeddings are compared by
    cosine similarity, i.e. the dot product of L2-normalized vectors (SimCLR,
    CLIP).

    Args:
        axis: int, the axis to normalize. Defaults to `-1`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Any shape; the output has the input's shape.

    Example:

    >>> import numpy as np
    >>> layer = L2Normalize()
    >>> layer(np.array([[3.0, 4.0]]))  # -> [[0.6, 0.8]]

    References:
        - Chen et al., 2020. "A Simple Framework for Contrastive Learning of
          Visual Representations". https://arxiv.org/abs/2002.05709
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_int("axis", axis)

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"`axis` must be in [{-rank}, {rank}) for inputs of shape "
                f"{tuple(input_shape)}. Received: axis={self.axis}"
            )

    def call(self, inputs):
        return l2_normalize(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
