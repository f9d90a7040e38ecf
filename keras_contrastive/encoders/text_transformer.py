"""`text_transformer`: a small transformer text encoder on `TextPreprocessor` output."""

import keras

from keras_contrastive.encoders._checks import check_int
from keras_contrastive.encoders.masked_mean_pooling import MaskedMeanPooling
from keras_contrastive.encoders.position_embedding import PositionEmbedding
from keras_contrastive.encoders.transformer_encoder_block import TransformerEncoderBlock


def text_transformer(
    vocabulary_size,
    sequence_length,
    embed_dim=64,
    num_heads=2,
    num_layers=2,
    intermediate_dim=None,
    output_dim=None,
    dropout=0.0,
    name="text_transformer",
):
    """A small transformer encoder: token ids and padding mask to a `(B, D)` representation.

    Token embeddings plus learned position embeddings go through `num_layers`
    pre-norm `TransformerEncoderBlock`s (attention never looks at padding) and
    a final LayerNormalization; the representation is the **mean over the real
    tokens** (`MaskedMeanPooling`), start and end tokens included. Mean
    pooling, rather than CLIP's end-token state, does not depend on where the
    end token is and works for `TextPreprocessor(end_token=None)`; padding,
    whatever its ids and length, does not change the output. `output_dim`
    adds a final linear projection. Built from Keras layers only: it compiles
    with XLA and saves to `.keras`.

    Args:
        vocabulary_size: int > 0, the number of token ids
            (`TextPreprocessor.vocabulary_size`).
        sequence_length: int > 0, the most tokens per row
            (`TextPreprocessor.sequence_length`); inputs may be shorter.
        embed_dim: int > 0, the model width; divisible by `num_heads`.
            Defaults to `64`.
        num_heads: int > 0. Defaults to `2`.
        num_layers: int > 0, the transformer blocks. Defaults to `2`.
        intermediate_dim: int > 0 or `None`, the feed-forward width.
            Defaults to `None` (`4 * embed_dim`).
        output_dim: int > 0 or `None`, the size of a final linear projection.
            Defaults to `None` (no projection; the output has `embed_dim`).
        dropout: float in [0, 1), dropout in the blocks. Defaults to `0.0`.
        name: str, the model name. Defaults to `"text_transformer"`.

    Shape:
        Input a dict `{"token_ids": (batch_size, length) int32,
        "padding_mask": (batch_size, length) bool}`, `length <=
        sequence_length`, as `TextPreprocessor` returns; output
        `(batch_size, output_dim or embed_dim)`.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> tokenize = kc.layers.TextPreprocessor.from_corpus(["a handwritten seven"], 50, 16)
    >>> encoder = text_transformer(tokenize.vocabulary_size, sequence_length=16)
    >>> encoder(tokenize(["a handwritten seven"])).shape  # (1, 64)

    References:
        - Vaswani et al., 2017. "Attention Is All You Need".
          https://arxiv.org/abs/1706.03762
        - Radford et al., 2021. "Learning Transferable Visual Models From
          Natural Language Supervision" (CLIP's text tower).
          https://arxiv.org/abs/2103.00020
    """
    check_int("vocabulary_size", vocabulary_size)
    check_int("sequence_length", sequence_length)
    check_int("embed_dim", embed_dim)
    check_int("num_heads", num_heads)
    check_int("num_layers", num_layers)
    if embed_dim % num_heads:
        raise ValueError(
            f"`embed_dim` must be divisible by `num_heads`={num_heads}. "
            f"Received: embed_dim={embed_dim}"
        )
    if output_dim is not None:
        check_int("output_dim", output_dim)
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input(shape=(None,), dtype="bool", name="padding_mask")
    tokens = keras.layers.Embedding(vocabulary_size, embed_dim, name="token_embedding")(token_ids)
    positions = PositionEmbedding(sequence_length, name="position_embedding")(tokens)
    x = keras.layers.Add(name="embeddings")([tokens, positions])
    for i in range(num_layers):
        block = TransformerEncoderBlock(
            num_heads, intermediate_dim, dropout=dropout, name=f"transformer_block{i + 1}"
        )
        x = block(x, padding_mask=padding_mask)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    outputs = MaskedMeanPooling(name="pool")(x, padding_mask=padding_mask)
    if output_dim is not None:
        outputs = keras.layers.Dense(output_dim, name="projection")(outputs)
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    return keras.Model(inputs, outputs, name=name)
