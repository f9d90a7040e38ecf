"""`SigmoidLogitScale`: SigLIP's learnable logit scale and bias."""

import keras
from keras import ops

from keras_contrastive.layers.logit_scale import LogitScale
from keras_contrastive.ops._validation import check_number


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SigmoidLogitScale(LogitScale):
    """Maps logits to `exp(t') · logits + b` with a learnable log scale `t'` and bias `b`.

    The pair of weights of SigLIP's sigmoid loss. A loss cannot own weights, so
    a model owns this layer and passes its `temperature` (`1 / exp(t')`) and
    `bias` to `kc.losses.SigLIPLoss` / `siglip_loss` in each step; calling the
    layer applies both to a matrix of similarities. A `LogitScale` whose
    scale is not clamped, plus the bias.

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
        super().__init__(initial_temperature, max_scale=None, learnable=learnable, **kwargs)
        self.initial_bias = check_number("initial_bias", initial_bias)
        self.bias = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(initial_bias),
            trainable=learnable,
            name="bias",
        )

    def call(self, logits):
        return super().call(logits) + ops.cast(self.bias, logits.dtype)

    def get_config(self):
        config = {**super().get_config(), "initial_bias": self.initial_bias}
        del config["max_scale"]
        return config
