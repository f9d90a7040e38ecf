"""VICReg: variance, invariance and covariance regularization of two views."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.losses._base import ContrastiveLoss, LossContract, views
from keras_contrastive.ops._validation import check_non_negative

# The official implementation's epsilon under the square root of the variance.
_STD_EPSILON = 1e-4


def vicreg_loss(y_true, y_pred, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """VICReg loss of a batch of two views, as one value per example.

    With `x = y_pred[:, 0]`, `y = y_pred[:, 1]` of shape `(B, D)`:

    `L = sim_coeff · MSE(x, y) + std_coeff · [v(x) + v(y)] / 2 +
    cov_coeff · [c(x) + c(y)]`,

    where `MSE` is the mean over all `B · D` entries of `(x − y)²`,
    `v(z) = mean_j relu(1 − sqrt(Var_j(z) + 1e-4))` with the unbiased
    variance, and `c(z) = Σ_{i≠j} Cov(z)_ij² / D` with
    `Cov(z) = z̄ᵀ z̄ / (B − 1)`, `z̄` centred on the batch mean.

    The variance and covariance terms belong to the whole batch; the
    invariance term is a mean over examples. Under a distribution strategy
    their statistics are those of the global batch: each replica gathers the
    rows of all replicas (with gradients), so that the replicas' gradients,
    each scaled by `1 / num_replicas` as Keras does, sum to the single-device
    gradient. The covariance term grows as the fourth power of the
    embeddings: in float32 it overflows once the off-diagonal covariances
    pass about `1e19` (entries of about `1e9`), where the loss itself is
    beyond the float32 range.

    Args:
        y_true: ignored (may be None).
        y_pred: `(B, 2, D)` the two views' embeddings (expander outputs),
            `B >= 2`. Half precision is computed in float32.
        sim_coeff: `>= 0`, the weight of the invariance (MSE) term. Default
            25, the paper's and the official code's.
        std_coeff: `>= 0`, the weight of the variance term. Default 25 (as
            the official code).
        cov_coeff: `>= 0`, the weight of the covariance term. Default 1 (as
            the official code).

    Returns:
        `(B,)` float32 (float64 for float64 input): example `i`'s
        `sim_coeff · mean_d (x_id − y_id)²` plus the variance and covariance
        terms of the global batch, so that their mean is `L`.

    Example:

    >>> import numpy as np
    >>> views = np.random.default_rng(0).normal(size=(8, 2, 4)).astype("float32")
    >>> values = vicreg_loss(None, views)
    >>> values.shape
    TensorShape([8])
    >>> same = vicreg_loss(None, np.repeat(views[:, :1], 2, axis=1))
    >>> bool(np.mean(same) < np.mean(values))  # no invariance term for identical views
    True

    Reference: Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning", ICLR 2022
    (github.com/facebookresearch/vicreg).
    """
    del y_true
    check_non_negative("sim_coeff", sim_coeff)
    check_non_negative("std_coeff", std_coeff)
    check_non_negative("cov_coeff", cov_coeff)
    x = views(y_pred)
    invariance = ops.mean(ops.square(x[:, 0] - x[:, 1]), axis=-1)
    everyone, _ = gather_candidates(x)  # (B_global, 2, D): identity on one device
    first, second = _centered(everyone[:, 0]), _centered(everyone[:, 1])
    variance = (_variance_term(first) + _variance_term(second)) / 2.0
    covariance = _covariance_term(first) + _covariance_term(second)
    sim_coeff, std_coeff, cov_coeff = (
        ops.convert_to_tensor(c, x.dtype) for c in (sim_coeff, std_coeff, cov_coeff)
    )
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


def _centered(z):
    """`z` minus its mean over axis 0, shifted by its first row first for precision."""
    shifted = z - z[:1]
    return shifted - ops.mean(shifted, axis=0)


def _variance_term(centered):
    """`mean_j relu(1 − sqrt(var_j + ε))`, the unbiased variance of each feature."""
    dof = ops.cast(ops.shape(centered)[0] - 1, centered.dtype)
    variance = ops.sum(ops.square(centered), axis=0) / dof
    return ops.mean(ops.relu(1.0 - ops.sqrt(variance + _STD_EPSILON)))


def _covariance_term(centered):
    """`Σ_{i≠j} Cov_ij² / D`; the diagonal is masked with `where`, so it may overflow."""
    dof = ops.cast(ops.shape(centered)[0] - 1, centered.dtype)
    covariance = ops.matmul(ops.transpose(centered), centered) / dof
    dim = ops.shape(covariance)[0]
    off_diagonal = ops.where(ops.eye(dim, dtype="bool"), 0.0, covariance)
    return ops.sum(ops.square(off_diagonal)) / ops.cast(dim, centered.dtype)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class VICRegLoss(ContrastiveLoss):
    """VICReg loss over two views: `y_pred` is `(B, 2, D)`.

    `sim_coeff · MSE(x, y) + std_coeff · variance + cov_coeff · covariance`
    of the two views `x, y` (see `kc.losses.vicreg_loss`): the views are
    pulled together while each feature keeps a standard deviation of at
    least 1 and the features stay decorrelated. Non-contrastive: no
    negatives, `y_true` is ignored. The statistics are those of the global
    batch under a distribution strategy. Calling the loss returns the batch
    loss (with the default reduction).

    Args:
        sim_coeff: `>= 0`, weight of the invariance term. Default 25.
        std_coeff: `>= 0`, weight of the variance term. Default 25.
        cov_coeff: `>= 0`, weight of the covariance term. Default 1 (the
            three defaults are the paper's and the official code's).
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = VICRegLoss(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0)
    >>> views = np.random.default_rng(0).normal(size=(8, 2, 4)).astype("float32")
    >>> float(loss(None, views)) > 0
    True

    Reference: Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning", ICLR 2022.
    """

    contract = LossContract(labels="ignored", y_pred="pair")

    def __init__(
        self,
        sim_coeff=25.0,
        std_coeff=25.0,
        cov_coeff=1.0,
        reduction="sum_over_batch_size",
        name="vicreg_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.sim_coeff = check_non_negative("sim_coeff", sim_coeff)
        self.std_coeff = check_non_negative("std_coeff", std_coeff)
        self.cov_coeff = check_non_negative("cov_coeff", cov_coeff)

    def call(self, y_true, y_pred):
        y_pred, _ = self._split_state(y_pred)
        return vicreg_loss(y_true, y_pred, self.sim_coeff, self.std_coeff, self.cov_coeff)

    def get_config(self):
        return {
            **super().get_config(),
            "sim_coeff": float(self.sim_coeff),
            "std_coeff": float(self.std_coeff),
            "cov_coeff": float(self.cov_coeff),
        }
