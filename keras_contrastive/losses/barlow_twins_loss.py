"""Barlow Twins: the cross-correlation of two views driven to the identity."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.losses._base import ContrastiveLoss, LossContract, views
from keras_contrastive.ops._validation import check_non_negative
from keras_contrastive.ops.similarity import times_power_of_two

# torch.nn.BatchNorm1d's default epsilon, as the official implementation uses it.
_BN_EPSILON = 1e-5
# The smallest normal float32: a floor for a variance whose epsilon underflowed.
_TINY = 1.1754944e-38


def barlow_twins_loss(y_true, y_pred, lambda_=0.0051):
    """Barlow Twins loss of a batch of two views, as one value per example.

    Each view `z1 = y_pred[:, 0]`, `z2 = y_pred[:, 1]` is standardized per
    feature over the batch as `BatchNorm1d(affine=False)` in training mode
    does (mean, biased variance, epsilon 1e-5), and with `C = bn(z1)ᵀ bn(z2) / B`
    the `(D, D)` cross-correlation,

    `L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²`.

    It is a loss of the whole batch, not a sum over examples. Under a
    distribution strategy the statistics are those of the global batch: each
    replica gathers the rows of all replicas (with gradients) and computes `L`
    of the global batch, so that the replicas' gradients, each scaled by
    `1 / num_replicas` as Keras does, sum to the single-device gradient.

    `L` is finite for any finite input (`|C_ij| <= 1`): each feature is scaled
    by a power of two and shifted by its first row before its variance is
    taken, so no square overflows and a constant feature standardizes to 0.

    Args:
        y_true: ignored (may be None).
        y_pred: `(B, 2, D)` the two views' embeddings (projector outputs),
            `B >= 2`. Half precision is computed in float32.
        lambda_: `λ >= 0`, the weight of the off-diagonal (redundancy
            reduction) term. Default 0.0051, the paper's and the official
            code's.

    Returns:
        `(B,)` float32 (float64 for float64 input): `L` of the global batch
        repeated for every local example, so that their mean is `L`.

    Example:

    >>> import numpy as np
    >>> views = np.random.default_rng(0).normal(size=(8, 2, 4)).astype("float32")
    >>> values = barlow_twins_loss(None, views)
    >>> values.shape
    TensorShape([8])
    >>> same = barlow_twins_loss(None, np.repeat(views[:, :1], 2, axis=1))
    >>> bool(same[0] < values[0])  # identical views correlate perfectly on the diagonal
    True

    Reference: Zbontar et al., "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", ICML 2021 (github.com/facebookresearch/barlowtwins).
    """
    del y_true
    check_non_negative("lambda_", lambda_)
    x = views(y_pred)
    everyone, _ = gather_candidates(x)  # (B_global, 2, D): identity on one device
    z1, z2 = _batch_norm(everyone[:, 0]), _batch_norm(everyone[:, 1])
    batch = ops.cast(ops.shape(everyone)[0], x.dtype)
    c = ops.matmul(ops.transpose(z1), z2) / batch
    diagonal = ops.eye(ops.shape(c)[0], dtype="bool")
    on_diagonal = ops.sum(ops.square(1.0 - ops.diagonal(c)))
    off_diagonal = ops.sum(ops.square(ops.where(diagonal, 0.0, c)))
    loss = on_diagonal + ops.convert_to_tensor(lambda_, x.dtype) * off_diagonal
    return ops.broadcast_to(loss, ops.shape(x)[:1])


def _batch_norm(z, epsilon=_BN_EPSILON):
    """`(z − mean) / sqrt(var + ε)` per feature (axis 0), the biased variance.

    Each feature is divided by `2**k`, `k >= 0` the exponent of its largest
    entry (no gradient: the result does not depend on it), with `ε` divided by
    `4**k` to match, and shifted by its first row, so that its squares cannot
    overflow and a constant feature is exactly zero before it is scaled.
    """
    top = ops.max(ops.abs(z), axis=0)
    k = ops.stop_gradient(ops.floor(ops.log2(ops.maximum(top, 1.0))))
    z = times_power_of_two(z, -k)
    shifted = z - z[:1]
    centered = shifted - ops.mean(shifted, axis=0)
    variance = ops.mean(ops.square(centered), axis=0)
    scaled_epsilon = times_power_of_two(ops.convert_to_tensor(epsilon, z.dtype), -2.0 * k)
    return centered * ops.rsqrt(ops.maximum(variance + scaled_epsilon, _TINY))


@keras.saving.register_keras_serializable(package="keras_contrastive")
class BarlowTwinsLoss(ContrastiveLoss):
    """Barlow Twins loss over two views: `y_pred` is `(B, 2, D)`.

    Drives the cross-correlation matrix `C` of the two views' batch-
    standardized embeddings to the identity: `L = Σ_i (1 − C_ii)² +
    λ Σ_{i≠j} C_ij²` (see `kc.losses.barlow_twins_loss`). Non-contrastive: no
    negatives, `y_true` is ignored. The statistics are those of the global
    batch under a distribution strategy. Calling the loss returns `L` (with
    the default reduction; `"sum"` returns `B · L`).

    Args:
        lambda_: `λ >= 0`, the weight of the off-diagonal term. Default
            0.0051 (the paper's and the official code's).
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = BarlowTwinsLoss(lambda_=0.0051)
    >>> views = np.random.default_rng(0).normal(size=(8, 2, 4)).astype("float32")
    >>> float(loss(None, views)) > 0
    True

    Reference: Zbontar et al., "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", ICML 2021.
    """

    contract = LossContract(labels="ignored", y_pred="pair")

    def __init__(
        self,
        lambda_=0.0051,
        reduction="sum_over_batch_size",
        name="barlow_twins_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.lambda_ = check_non_negative("lambda_", lambda_)

    def call(self, y_true, y_pred):
        y_pred, _ = self._split_state(y_pred)
        return barlow_twins_loss(y_true, y_pred, self.lambda_)

    def get_config(self):
        return {**super().get_config(), "lambda_": float(self.lambda_)}
