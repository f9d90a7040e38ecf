"""`LogitScale`: a learnable inverse temperature, as in CLIP."""

import math

import keras
from keras import ops

from keras_contrastive.ops._validation import check_bool, check_positive


@keras.saving.register_keras_serializable(package="keras_contrastive")
class LogitScale(keras.layers.Layer):
    """Multiplies logits by a learnable scale `exp(t)`, clamped at `max_scale`.

    The weight is the log scale `t = log(1 / temperature)`, so the scale stays
    positive and gradient steps are relative. The scale used is
    `min(exp(t), max_scale)`; once clamped, its gradient is zero (CLIP clips
    `t` at `log(100)` for training stability).

    Args:
        initial_temperature: float > 0, the temperature `T` to start from;
            `t` is initialised to `log(1 / T)`. Defaults to `0.07` (CLIP).
        max_scale: float > 0, the largest scale `exp(t)` used, or `None`
            for no clamp. Defaults to `100.0` (CLIP). Must be at least
            `1 / initial_temperature`, or the scale would start clamped and
            never learn.
        learnable: bool, whether `t` is a trainable weight. Defaults to
            `True`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Any shape (typically `(N, M)` similarity logits); the output has the
        input's shape.

    Example:

    >>> layer = LogitScale(initial_temperature=0.07)
    >>> scaled = layer(keras.ops.ones((2, 2)))  # every entry 1 / 0.07
    >>> float(layer.temperature)  # 0.07

    References:
        - Radford et al., 2021. "Learning Transferable Visual Models From
          Natural Language Supervision". https://arxiv.org/abs/2103.00020
    """

    def __init__(self, initial_temperature=0.07, max_scale=100.0, learnable=True, **kwargs):
        super().__init__(**kwargs)
        initial_temperature = check_positive(
            "initial_temperature", initial_temperature, allow_variable=False
        )
        if max_scale is not None:
            max_scale = check_positive("max_scale", max_scale, allow_variable=False)
        if max_scale is not None and 1.0 / initial_temperature > max_scale:
            raise ValueError(
                "`1 / initial_temperature` must be <= `max_scale`, or the scale "
                "starts clamped and gets no gradient. Received: "
                f"initial_temperature={initial_temperature}, max_scale={max_scale}"
            )
        self.initial_temperature = initial_temperature
        self.max_scale = max_scale
        self.learnable = check_bool("learnable", learnable)
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(1.0 / initial_temperature)),
            trainable=learnable,
            name="log_scale",
        )
        self.built = True  # the weights exist: nothing to build from an input shape

    @property
    def scale(self):
        """The current scale `min(exp(t), max_scale)`, a scalar tensor."""
        scale = ops.exp(self.log_scale)
        return scale if self.max_scale is None else ops.minimum(scale, self.max_scale)

    @property
    def temperature(self):
        """The current temperature `1 / scale`, a scalar tensor."""
        return 1.0 / self.scale

    def call(self, logits):
        return logits * ops.cast(self.scale, logits.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "initial_temperature": self.initial_temperature,
            "max_scale": self.max_scale,
            "learnable": self.learnable,
        }
