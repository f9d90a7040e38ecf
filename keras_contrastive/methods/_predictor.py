"""The prediction MLP of SimSiam, BYOL and NNCLR, and the projection dim it is built on."""

import keras

# PyTorch's BatchNorm1d defaults, as the papers' code uses them.
_BN_MOMENTUM, _BN_EPSILON = 0.9, 1e-5


def projection_dim(model, method, predictor=None):
    """`D`, the last dim of the model's projections; None if a built `predictor` needs none."""
    if model.encoder is None:
        raise ValueError(
            f"{method} trains one `encoder`, shared by the two views; a dual-encoder model "
            "(image_encoder, text_encoder) trains with kc.methods.DualEncoder. "
            "Received: encoder=None"
        )
    try:
        shape = tuple(model.encoder.output_shape)
        if model.projection_head is not None:
            shape = tuple(model.projection_head.compute_output_shape(shape))
        return shape[-1]
    except (AttributeError, ValueError, NotImplementedError):
        if predictor is not None and predictor.built:
            return None
        raise ValueError(
            f"{method} builds its layers from the projection dim, which cannot be read from "
            f"the encoder `{model.encoder.name}`: use an encoder with a known output shape "
            "(a functional keras.Model with an Input) or pass a built `predictor=`."
        ) from None


def predictor_mlp(dim, hidden, name="predictor"):
    """`Dense(hidden, no bias) -> BatchNormalization -> ReLU -> Dense(dim)` on `dim` inputs."""
    return keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(hidden, use_bias=False),
            keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON),
            keras.layers.ReLU(),
            keras.layers.Dense(dim),
        ],
        name=name,
    )


def check_predictor(predictor, dim):
    """Raises `ValueError` unless `predictor` maps `dim`-d projections to `dim`-d outputs."""
    if dim is None:
        return
    try:
        out = predictor.compute_output_shape((None, dim))[-1]
    except NotImplementedError:  # a layer that cannot tell: the loss checks the shapes
        return
    if out != dim:
        raise ValueError(
            f"`predictor` must map the {dim}-d projections to {dim}-d predictions (they "
            f"are compared with {dim}-d targets). Received: a predictor of output dim {out}"
        )
