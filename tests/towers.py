"""Small towers and models shared by the model tests: fast to build, no BatchNorm unless asked."""

import keras
import numpy as np

import keras_contrastive as kc


def mlp(input_dim=6, output_dim=8, dropout=0.0, name=None):
    """`(B, input_dim) -> (B, output_dim)`: one tanh Dense layer, then optional dropout."""
    inputs = keras.Input((input_dim,))
    x = keras.layers.Dense(output_dim, activation="tanh")(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=3)(x)
    return keras.Model(inputs, x, name=name)


def head(dim=4, batch_norm=False):
    """A `ProjectionHead` with one hidden layer of 8 units, to `dim`."""
    return kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=dim, batch_norm=batch_norm)


# ------------------------------------------------- model modes (XLA, mixed precision)
BATCH = 8
CAPTIONS = ["a red square", "a blue circle", "a green line", "a small dot"]


def features(seed=0):
    """`(BATCH, 6)` float32 inputs of `mlp()`."""
    return np.random.default_rng(seed).normal(size=(BATCH, 6)).astype("float32")


def class_labels():
    """`(BATCH,)` int32 labels of three classes."""
    return (np.arange(BATCH) % 3).astype("int32")


def small_images():
    """`(BATCH, 16, 16, 3)` float32 images in [0, 1]."""
    return np.random.default_rng(0).uniform(size=(BATCH, 16, 16, 3)).astype("float32")


def simclr_model(projection_head):
    """A tiny `small_cnn` SimCLR model with `SimCLRAugmentation` in the step."""
    return kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=4),
        projection_head=projection_head,
        augmenter=kc.layers.SimCLRAugmentation(image_size=16, value_range=(0, 1)),
    )


def clip_model(image_head, text_head):
    """A CLIP model: `mlp()` images, a one-layer text transformer, a learned temperature."""
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        CAPTIONS, vocabulary_size=50, sequence_length=6, tokenizer="whitespace"
    )
    return kc.ContrastiveModel(
        image_encoder=mlp(),
        text_encoder=kc.encoders.text_transformer(
            preprocessor.vocabulary_size, 6, embed_dim=8, num_heads=1, num_layers=1
        ),
        image_head=image_head,
        text_head=text_head,
        text_preprocessor=preprocessor,
        logit_scale="learnable",
    )


def captions():
    """`(BATCH,)` raw caption strings."""
    return np.array([CAPTIONS[i % 4] for i in range(BATCH)])
