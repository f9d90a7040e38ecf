"""Tests for `text_transformer` and its layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

from keras_contrastive.datasets import digit_captions
from keras_contrastive.encoders import (
    MaskedMeanPooling,
    PositionEmbedding,
    TransformerEncoderBlock,
    text_transformer,
)
from keras_contrastive.layers import TextPreprocessor

SEQUENCE_LENGTH = 12


@pytest.fixture(scope="module")
def tokenizer():
    corpus = digit_captions(np.arange(50) % 10, captions_per_image=3).ravel().tolist()
    return TextPreprocessor.from_corpus(
        corpus, vocabulary_size=200, sequence_length=SEQUENCE_LENGTH
    )


@pytest.fixture(scope="module")
def encoder(tokenizer):
    return text_transformer(tokenizer.vocabulary_size, SEQUENCE_LENGTH, embed_dim=16, output_dim=8)


@pytest.fixture(scope="module")
def inputs(tokenizer):
    return tokenizer(["a handwritten seven", "the digit 3 written by hand", ""])


def test_shapes(tokenizer, encoder, inputs):
    assert encoder(inputs).shape == (3, 8)
    no_projection = text_transformer(tokenizer.vocabulary_size, SEQUENCE_LENGTH, embed_dim=16)
    assert no_projection(inputs).shape == (3, 16)
    assert len(encoder.layers) == len(no_projection.layers) + 1


def test_padding_does_not_change_the_output(encoder, inputs):
    expected = encoder(inputs).numpy()
    mask = inputs["padding_mask"].numpy()
    # Any ids in the padded slots.
    noisy_ids = np.where(
        mask, inputs["token_ids"], np.random.default_rng(0).integers(1, 50, mask.shape)
    )
    noisy = {"token_ids": noisy_ids.astype("int32"), "padding_mask": mask}
    np.testing.assert_allclose(encoder(noisy), expected, atol=1e-5)
    # Shorter padding: cut to the longest text.
    longest = mask.sum(axis=1).max()
    assert longest < SEQUENCE_LENGTH
    short = {key: value[:, :longest] for key, value in inputs.items()}
    np.testing.assert_allclose(encoder(short), expected, atol=1e-5)


def test_xla_matches_eager(encoder, inputs):
    compiled = tf.function(encoder, jit_compile=True)
    np.testing.assert_allclose(compiled(inputs), encoder(inputs), atol=1e-5)


def test_round_trip_through_keras_file(encoder, inputs, tmp_path):
    path = str(tmp_path / "text.keras")
    encoder.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored(inputs), encoder(inputs))


def test_end_to_end_on_raw_strings_trains(tokenizer):
    labels = np.arange(40) % 10
    texts = digit_captions(labels, captions_per_image=1)[:, 0]
    strings = keras.Input(shape=(), dtype="string")
    encoder = text_transformer(tokenizer.vocabulary_size, SEQUENCE_LENGTH, embed_dim=16)
    logits = keras.layers.Dense(10)(encoder(tokenizer(strings)))
    model = keras.Model(strings, logits)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    dataset = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(20)
    history = model.fit(dataset, epochs=15, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def _layer_norm(x, layer):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    gamma, beta = (w.numpy() for w in layer.weights)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _block_reference(block, x, mask):
    """The pre-LN block in NumPy, from the layer's weights."""
    q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias, o_kernel, o_bias = (
        w.numpy() for w in block.attention.weights
    )
    h = _layer_norm(x, block.attention_norm)
    q = np.einsum("bld,dhk->bhlk", h, q_kernel) + q_bias.transpose(0, 1)[None, :, None]
    k = np.einsum("bld,dhk->bhlk", h, k_kernel) + k_bias[None, :, None]
    v = np.einsum("bld,dhk->bhlk", h, v_kernel) + v_bias[None, :, None]
    scores = np.einsum("bhqk,bhsk->bhqs", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = np.einsum("bhqs,bhsk->bqhk", weights, v)
    x = x + np.einsum("bqhk,hkd->bqd", attended, o_kernel) + o_bias
    h = _layer_norm(x, block.feedforward_norm)
    w1, b1 = (w.numpy() for w in block.feedforward_in.weights)
    w2, b2 = (w.numpy() for w in block.feedforward_out.weights)
    hidden = h @ w1 + b1
    hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))
    return x + hidden @ w2 + b2


def test_transformer_block_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mask = np.array([[True, True, True, False, False], [True] * 5])
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=12)
    out = block(x, padding_mask=mask).numpy()
    np.testing.assert_allclose(out, _block_reference(block, x, mask), rtol=1e-4, atol=1e-4)


def test_masked_mean_pooling_matches_numpy():
    x = np.random.default_rng(1).normal(size=(3, 4, 2)).astype("float32")
    mask = np.array([[True, False, True, False], [True] * 4, [False] * 4])
    out = MaskedMeanPooling()(x, padding_mask=mask).numpy()
    np.testing.assert_allclose(out[0], x[0, [0, 2]].mean(0), rtol=1e-6)
    np.testing.assert_allclose(out[1], x[1].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(out[2], [0.0, 0.0])  # no real token: zeros, not NaN


def test_position_embedding_slices_its_table():
    layer = PositionEmbedding(sequence_length=6)
    out = layer(np.zeros((2, 4, 3), "float32")).numpy()
    table = layer.embeddings.numpy()
    assert table.shape == (6, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(table[:4], (2, 4, 3)))
    with pytest.raises(ValueError, match="sequence_length=6"):
        layer(np.zeros((1, 7, 3), "float32"))


@pytest.mark.parametrize(
    "layer",
    [
        PositionEmbedding(sequence_length=5, name="positions"),
        TransformerEncoderBlock(num_heads=4, intermediate_dim=7, dropout=0.1, activation="relu"),
        MaskedMeanPooling(name="pool"),
    ],
)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    restored = layer.__class__.from_config(config)
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["module"] is not None
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"vocabulary_size": 0}, "vocabulary_size"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"embed_dim": 10, "num_heads": 3}, "embed_dim"),
        ({"num_heads": 0}, "num_heads"),
        ({"num_layers": 0}, "num_layers"),
        ({"output_dim": -1}, "output_dim"),
        ({"intermediate_dim": 0}, "intermediate_dim"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, name):
    kwargs = {"vocabulary_size": 50, "sequence_length": 8, **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        text_transformer(**kwargs)


def test_block_input_dim_must_divide_into_heads():
    with pytest.raises(ValueError, match="num_heads=3"):
        TransformerEncoderBlock(num_heads=3)(np.zeros((1, 2, 8), "float32"))
