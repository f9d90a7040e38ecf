"""A collapse monitor: how spread out the L2-normalized embeddings are."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.metrics.contrastive_accuracy import _embeddings, _per_example
from keras_contrastive.ops.similarity import l2_normalize


@keras.saving.register_keras_serializable(package="keras_contrastive")
class EmbeddingStd(keras.metrics.Mean):
    """The per-dimension standard deviation of L2-normalized embeddings, averaged over dims.

    A collapse monitor for non-contrastive methods (BYOL, SimSiam), as the
    SimSiam paper plots it and lightly and solo-learn log it: each embedding
    is L2-normalized, the standard deviation of each dimension is taken over
    the batch (with Bessel's correction, as `torch.std`), and the result is
    averaged over dimensions, and over views for `(B, V, D)` embeddings
    (each view's statistics apart). Embeddings spread over the unit sphere
    give about `1 / sqrt(D)`; embeddings collapsed to one point give 0.

    Under a `tf.distribute` replica context the statistics are those of the
    global batch (`kc.distribute.gather_candidates`); each replica adds the
    value weighted by its share of the batch, so that the model's sum of the
    replicas' `total` and `count` gives the global value. Over several
    batches, `result()` is the mean of the batches' values weighted by their
    size (their sum of sample weights).

    Args:
        name: str, the metric's name. Defaults to `"embedding_std"`.
        dtype: the dtype of the metric's variables and result. Defaults to
            `None` (`keras.config.floatx()`).

    `update_state(y_true, y_pred, sample_weight=None)`:
        y_true: ignored (may be None).
        y_pred: `(B, D)` or `(B, V, D)` embeddings, or a dict whose
            `"embeddings"` key holds them. Computed in float32 under
            `stop_gradient`.
        sample_weight: optional `(B,)` weights per example, as reliability
            weights of the mean and the variance (an example of weight 0 is
            left out; weights `w` and `c·w` give the same value). Defaults to
            `None` (all 1).

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> metric = kc.metrics.EmbeddingStd()
    >>> metric.update_state(None, np.tile([[1.0, 2.0, 3.0]], (8, 1)))  # collapsed
    >>> float(metric.result())
    0.0

    References:
        - Chen & He, "Exploring Simple Siamese Representation Learning",
          CVPR 2021 (Figure 2, the std of the l2-normalized output).
    """

    def __init__(self, name="embedding_std", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        del y_true
        x = _embeddings(y_pred)
        x = ops.stop_gradient(l2_normalize(x if len(x.shape) == 3 else x[:, None]))
        if sample_weight is None:
            weights = ops.ones(ops.shape(x)[:1], "float32")
        else:
            weights = ops.cast(_per_example("sample_weight", sample_weight, x), "float32")
        everyone, _ = gather_candidates(x)
        all_weights, _ = gather_candidates(weights)
        std = _weighted_std(everyone, all_weights[:, None, None])
        return super().update_state(ops.mean(std), sample_weight=ops.sum(weights))


def _weighted_std(x, w):
    """The std over axis 0 with reliability weights `w`: `Σ w (x − μ)² / (V₁ − V₂ / V₁)`.

    `V₁ = Σ w`, `V₂ = Σ w²`; for weights of 1 the denominator is `B − 1`.
    A batch of one example (or one of non-zero weight) has std 0. The rows
    are shifted by the first one first, so that identical rows give exactly 0.
    """
    x = x - x[:1]
    v1, v2 = ops.sum(w, axis=0), ops.sum(ops.square(w), axis=0)
    mean = ops.divide_no_nan(ops.sum(w * x, axis=0), v1)
    squares = ops.sum(w * ops.square(x - mean), axis=0)
    variance = ops.divide_no_nan(squares, v1 - ops.divide_no_nan(v2, v1))
    return ops.sqrt(ops.maximum(variance, 0.0))
