"""`ProjectionHead`: the MLP between an encoder and a contrastive loss."""

import keras

from keras_contrastive.ops._validation import (
    check_bool,
    check_int,
    check_positive,
    check_probability,
)


def _check_hidden_dims(hidden_dims):
    if not isinstance(hidden_dims, (list, tuple)):
        raise ValueError(
            "`hidden_dims` must be a tuple of positive ints (empty for a linear "
            f"head). Received: hidden_dims={hidden_dims!r}"
        )
    return tuple(check_int("hidden_dims", d, min=1) for d in hidden_dims)


def _check_input_shape(shape):
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            "`inputs` must have shape (batch_size, dim) with a known dim. "
            f"Received: inputs.shape={tuple(shape)}"
        )


@keras.saving.register_keras_serializable(package="keras_contrastive")
class ProjectionHead(keras.layers.Layer):
    """An MLP projection head: `Dense -> [BN] -> activation` blocks, then `Dense -> [BN]`.

    Each hidden layer is `Dense(d)`, batch normalization (when `batch_norm`) and
    `activation`; the output layer is `Dense(output_dim)` followed, when
    `batch_norm`, by a batch normalization without learned offset (`center=False`)
    and no activation. This is the head of the SimCLR reference implementation
    (google-research/simclr, `model_util.projection_head`):

    - SimCLR v1 (Chen et al., 2020a): `hidden_dims=(2048,)` (one hidden layer,
      the defaults);
    - SimCLR v2 (Chen et al., 2020b): `hidden_dims=(2048, 2048)` (3 layers);
    - a linear head: `hidden_dims=()`.

    With `batch_norm=False` it is the plain MLP of the SimCLR paper,
    `W2 relu(W1 h)`.

    Args:
        hidden_dims: tuple of ints, the width of each hidden layer; `()` for a
            linear head. Defaults to `(2048,)` (SimCLR, ResNet-50 width).
        output_dim: int, the projection size. Defaults to `128` (SimCLR).
        batch_norm: bool, whether each layer, the output included, is followed
            by batch normalization. Defaults to `True` (SimCLR reference code).
        synchronized: bool, whether batch statistics are computed over the
            global batch across replicas (`BatchNormalization(synchronized=True)`,
            SimCLR's global BN) under a `tf.distribute` strategy. Defaults to
            `False`.
        activation: activation of the hidden layers. Defaults to `"relu"`.
        use_bias: bool or `None`, whether the `Dense` layers have a bias.
            `None` means `not batch_norm`: a bias right before batch
            normalization is cancelled by its mean subtraction. Defaults to
            `None`.
        kernel_initializer: initializer of the `Dense` kernels. Defaults to
            `"glorot_uniform"`.
        batch_norm_momentum: float, momentum of the moving statistics. Defaults
            to `0.9` (SimCLR reference code).
        batch_norm_epsilon: float, the variance epsilon. Defaults to `1e-5`
            (SimCLR reference code).
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Input `(batch_size, input_dim)`; output `(batch_size, output_dim)`.

    Example:

    >>> head = ProjectionHead(hidden_dims=(512,), output_dim=128)
    >>> head(keras.ops.ones((4, 64)), training=True).shape  # (4, 128)

    References:
        - Chen et al., 2020a. "A Simple Framework for Contrastive Learning of
          Visual Representations". https://arxiv.org/abs/2002.05709
        - Chen et al., 2020b. "Big Self-Supervised Models are Strong
          Semi-Supervised Learners". https://arxiv.org/abs/2006.10029
    """

    def __init__(
        self,
        hidden_dims=(2048,),
        output_dim=128,
        batch_norm=True,
        synchronized=False,
        activation="relu",
        use_bias=None,
        kernel_initializer="glorot_uniform",
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dims = _check_hidden_dims(hidden_dims)
        self.output_dim = check_int("output_dim", output_dim, min=1)
        self.batch_norm = check_bool("batch_norm", batch_norm)
        self.synchronized = check_bool("synchronized", synchronized)
        self.activation = keras.activations.get(activation)
        self.use_bias = (not batch_norm) if use_bias is None else check_bool("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.batch_norm_momentum = check_probability("batch_norm_momentum", batch_norm_momentum)
        self.batch_norm_epsilon = check_positive(
            "batch_norm_epsilon", batch_norm_epsilon, allow_variable=False
        )
        self.sublayers = []
        for dim in self.hidden_dims:
            self.sublayers += self._block(dim, center=True, activation=self.activation)
        self.sublayers += self._block(output_dim, center=False, activation=None)

    def _block(self, units, center, activation):
        """`Dense -> [BatchNormalization] -> [activation]` as a list of layers."""
        block = [
            keras.layers.Dense(
                units,
                use_bias=self.use_bias,
                kernel_initializer=keras.initializers.get(
                    keras.initializers.serialize(self.kernel_initializer)
                ),
                dtype=self.dtype_policy,
            )
        ]
        if self.batch_norm:
            block.append(
                keras.layers.BatchNormalization(
                    momentum=self.batch_norm_momentum,
                    epsilon=self.batch_norm_epsilon,
                    center=center,
                    synchronized=self.synchronized,
                    dtype=self.dtype_policy,
                )
            )
        if activation is not None:
            block.append(keras.layers.Activation(activation, dtype=self.dtype_policy))
        return block

    def build(self, input_shape):
        _check_input_shape(input_shape)
        shape = tuple(input_shape)
        for layer in self.sublayers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        _check_input_shape(inputs.shape)
        x = inputs
        for layer in self.sublayers:
            if isinstance(layer, keras.layers.BatchNormalization):
                x = layer(x, training=training)
            else:
                x = layer(x)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dims": list(self.hidden_dims),
            "output_dim": self.output_dim,
            "batch_norm": self.batch_norm,
            "synchronized": self.synchronized,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "batch_norm_momentum": self.batch_norm_momentum,
            "batch_norm_epsilon": self.batch_norm_epsilon,
        }
