"""`TransformerEncoderBlock`: one pre-norm self-attention block that honours a padding mask."""

import keras
from keras import ops

from keras_contrastive.encoders._checks import check_int
from keras_contrastive.ops._validation import check_number, check_positive


@keras.saving.register_keras_serializable(package="keras_contrastive")
class TransformerEncoderBlock(keras.layers.Layer):
    """A pre-LayerNorm transformer encoder block with a padding mask.

    `x = x + Dropout(MultiHeadAttention(LN(x)))`, then
    `x = x + Dropout(Dense(Dense(LN(x), activation)))`: the pre-norm form
    (Xiong et al., 2020; as GPT-2 and CLIP's text tower), which trains stably
    without learning-rate warm-up. Attention never looks at padded keys
    (`padding_mask` False), so the outputs at real tokens do not depend on
    the padding.

    Args:
        num_heads: int > 0, the attention heads; must divide the input dim.
        intermediate_dim: int > 0 or `None`, the feed-forward width. Defaults
            to `None` (4 x the input dim, as Vaswani et al.).
        dropout: float in [0, 1), dropout of the attention weights and of both
            residual branches. Defaults to `0.0`.
        activation: the feed-forward activation. Defaults to `"gelu"` (BERT,
            GPT-2).
        layer_norm_epsilon: float > 0. Defaults to `1e-5`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        `inputs` `(batch_size, length, dim)` and optional `padding_mask`
        `(batch_size, length)` bool (True on real tokens); output
        `(batch_size, length, dim)`.

    Example:

    >>> block = TransformerEncoderBlock(num_heads=2)
    >>> mask = keras.ops.array([[True, True, False]])
    >>> block(keras.ops.ones((1, 3, 8)), padding_mask=mask).shape  # (1, 3, 8)

    References:
        - Vaswani et al., 2017. "Attention Is All You Need".
          https://arxiv.org/abs/1706.03762
        - Xiong et al., 2020. "On Layer Normalization in the Transformer
          Architecture". https://arxiv.org/abs/2002.04745
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim=None,
        dropout=0.0,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_int("num_heads", num_heads)
        if intermediate_dim is not None:
            check_int("intermediate_dim", intermediate_dim)
        check_number("dropout", dropout, min=0, max=1, max_inclusive=False)
        check_positive("layer_norm_epsilon", layer_norm_epsilon, allow_variable=False)
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        dim = input_shape[-1]
        if len(input_shape) != 3 or dim is None or dim % self.num_heads:
            raise ValueError(
                f"`inputs` must have shape (batch_size, length, dim) with dim divisible by "
                f"num_heads={self.num_heads}. Received: inputs.shape={tuple(input_shape)}"
            )
        hidden = self.intermediate_dim or 4 * dim
        # Named sublayers: their paths (`block/attention/query`, what `kc.lora`
        # targets and records) are the same in every process, unlike Keras'
        # per-process counters (`dense_71`).
        common = {"dtype": self.dtype_policy}
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", **common
        )
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, dim // self.num_heads, dropout=self.dropout, name="attention", **common
        )
        self.feedforward_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="feedforward_norm", **common
        )
        self.feedforward_in = keras.layers.Dense(
            hidden, activation=self.activation, name="feedforward_in", **common
        )
        self.feedforward_out = keras.layers.Dense(dim, name="feedforward_out", **common)
        self.residual_dropout = keras.layers.Dropout(
            self.dropout, name="residual_dropout", **common
        )
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.feedforward_norm.build(input_shape)
        self.feedforward_in.build(input_shape)
        self.feedforward_out.build((*input_shape[:-1], hidden))

    def call(self, inputs, padding_mask=None, training=None):
        attention_mask = None
        if padding_mask is not None:
            keys = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)  # (B, 1, L)
            attention_mask = ops.logical_and(keys, ops.expand_dims(ops.ones_like(keys[:, 0]), 2))
        x = self.attention_norm(inputs)
        x = self.attention(x, x, attention_mask=attention_mask, training=training)
        x = inputs + self.residual_dropout(x, training=training)
        y = self.feedforward_out(self.feedforward_in(self.feedforward_norm(x)))
        return x + self.residual_dropout(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
