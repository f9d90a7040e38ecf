"""`SigmoidLogitScale`: SigLIP's learnable logit scale and bias."""

import math

import keras
from keras import ops

from keras_contrastive.ops._validation import check_positive


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SigmoidLogitScale(keras.layers.Layer):
    """Maps logits to `exp(t') · logits + b` with a learnable log scale `t'` and bias `b`.

    The pair of weights of SigLIP's sigmoid loss. A loss cannot own weights, so
    a model owns this layer and passes its `temperature` (`1 / exp(t')`) and
    `bias` to `kc.losses.SigLIPLoss` / `siglip_loss` in each step; calling the
    layer applies both to a matrix of similarities. The scale is not clamped.

    Args:
        initial_temperature: float > 0, the temperature `1/t` to start from;
            `t'` is initialised to `log(1 / initial_temperature)`. Defaults to
            `0.1` (SigLIP: `t' = log 10`).
        initial_bias: finite float, the starting `b`. Defaults to `-10.0`
            (SigLIP).
        learnable: bool, whether `t'` and `b` are trainable weights.
            Defaults to `True`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Any shape (typically `(N, M)` cosine similarities); the output has
        the input's shape.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> layer = SigmoidLogitScale()
    >>> logits = layer(keras.ops.ones((2, 2)))  # every entry 10 · 1 − 10 = 0
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> loss = kc.losses.siglip_loss(None, pairs, layer.temperature, layer.bias)

    References:
        - Zhai et al., 2023. "Sigmoid Loss for Language Image Pre-Training".
          https://arxiv.org/abs/2303.15343
    """

    def __init__(self, initial_temperature=0.1, initial_bias=-10.0, learnable=True, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("initial_temperature", initial_temperature),
            ("initial_bias", initial_bias),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}")
        check_positive("initial_temperature", initial_temperature)
        if not math.isfinite(initial_bias):
            raise ValueError(
                f"`initial_bias` must be finite. Received: initial_bias={initial_bias}"
            )
        self.initial_temperature = initial_temperature
        self.initial_bias = initial_bias
        self.learnable = learnable
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(1.0 / initial_temperature)),
            trainable=learnable,
            name="log_scale",
        )
        self.bias = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(initial_bias),
            trainable=learnable,
            name="bias",
        )
        self.built = True  # the weights exist: nothing to build from an input shape

    @property
    def scale(self):
        """The current scale `t = exp(t')`, a scalar tensor."""
        return ops.exp(self.log_scale)

    @property
    def temperature(self):
        """The current temperature `1 / t`, a scalar tensor."""
        return ops.exp(-self.log_scale)

    def call(self, logits):
        return logits * ops.cast(self.scale, logits.dtype) + ops.cast(self.bias, logits.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "initial_temperature": self.initial_temperature,
            "initial_bias": self.initial_bias,
            "learnable": self.learnable,
        }
