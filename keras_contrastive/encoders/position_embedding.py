"""`PositionEmbedding`: a learned embedding of each token position."""

import keras
from keras import ops

from keras_contrastive.encoders._checks import check_int


@keras.saving.register_keras_serializable(package="keras_contrastive")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings, broadcast to the shape of the input.

    Returns the embeddings of positions `0 .. length - 1` for an input of
    `length` tokens (any `length <= sequence_length`), to be added to the token
    embeddings (Vaswani et al., 2017; learned as in BERT and CLIP). Positions
    are absolute, so padding appended after the text leaves the embeddings of
    the real tokens unchanged.

    Args:
        sequence_length: int > 0, the largest number of positions.
        initializer: initializer of the `(sequence_length, dim)` table.
            Defaults to a truncated normal with stddev `0.02` (BERT).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Input `(batch_size, length, dim)` with `length <= sequence_length`;
        output the same shape.

    Example:

    >>> layer = PositionEmbedding(sequence_length=16)
    >>> layer(keras.ops.zeros((2, 10, 8))).shape  # (2, 10, 8)

    References:
        - Vaswani et al., 2017. "Attention Is All You Need".
          https://arxiv.org/abs/1706.03762
        - Devlin et al., 2019. "BERT: Pre-training of Deep Bidirectional
          Transformers for Language Understanding". https://arxiv.org/abs/1810.04805
    """

    def __init__(self, sequence_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = check_int("sequence_length", sequence_length)
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )

    def _check_shape(self, shape):
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                "`inputs` must have shape (batch_size, length, dim) with a known dim. "
                f"Received: inputs.shape={tuple(shape)}"
            )
        if shape[1] is not None and shape[1] > self.sequence_length:
            raise ValueError(
                f"`inputs` must have at most sequence_length={self.sequence_length} "
                f"positions. Received: inputs.shape={tuple(shape)}"
            )

    def build(self, input_shape):
        self._check_shape(input_shape)
        self.embeddings = self.add_weight(
            shape=(self.sequence_length, input_shape[-1]),
            initializer=self.initializer,
            name="embeddings",
        )

    def call(self, inputs):
        self._check_shape(inputs.shape)
        length = ops.shape(inputs)[1]
        positions = ops.cast(self.embeddings[:length], inputs.dtype)
        return ops.broadcast_to(positions[None], ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "sequence_length": self.sequence_length,
            "initializer": keras.initializers.serialize(self.initializer),
        }
