"""Small towers shared by the model tests: fast to build, no BatchNorm unless asked."""

import keras

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
