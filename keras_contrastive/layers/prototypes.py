"""`Prototypes`: cosine similarities of embeddings to K learned unit prototypes."""

import keras
from keras import ops

from keras_contrastive.ops._validation import check_bool, check_int
from keras_contrastive.ops.similarity import l2_normalize


@keras.saving.register_keras_serializable(package="keras_contrastive")
class Prototypes(keras.layers.Layer):
    """Logits over `K` prototypes: the cosine of each embedding with each learned prototype.

    DINO's last layer (Caron et al. 2021, `DINOHead` with
    `norm_last_layer=True`): the bottleneck embedding `x` is L2-normalized and
    multiplied by a weight-normalized linear layer without bias whose norms
    are fixed to 1, so that logit `k` is `cos(x, w_k)`, in `[−1, 1]`, with
    `w_k` the `k`-th column of `kernel`. The temperatures of `kc.losses.DINOLoss`
    turn them into sharp distributions. The kernel starts from a truncated
    normal of standard deviation 0.02, as DINO's linear layers.

    Args:
        num_prototypes: int >= 1, `K`. DINO: 65,536.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Input `(B, D)`; output `(B, K)`.

    Example:

    >>> import numpy as np
    >>> layer = kc.layers.Prototypes(num_prototypes=8)
    >>> logits = layer(np.ones((2, 4), "float32"))
    >>> tuple(logits.shape), bool(np.all(np.abs(logits) <= 1 + 1e-6))
    ((2, 8), True)

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision
    Transformers", ICCV 2021 (the DINO head).
    """

    def __init__(self, num_prototypes, normalize=True, **kwargs):
        super().__init__(**kwargs)
        self.num_prototypes = check_int("num_prototypes", num_prototypes, min=1)
        self.normalize = check_bool("normalize", normalize)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "`Prototypes` takes (B, D) embeddings with a known D. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.num_prototypes),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="kernel",
        )

    def call(self, inputs):
        x = l2_normalize(ops.convert_to_tensor(inputs))
        kernel = l2_normalize(self.kernel, axis=0) if self.normalize else self.kernel
        return ops.matmul(x, ops.cast(kernel, x.dtype))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_prototypes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_prototypes": self.num_prototypes,
            "normalize": self.normalize,
        }
