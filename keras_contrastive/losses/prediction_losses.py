"""BYOL and SimSiam: a prediction regressed onto a stop-gradient target, by cosine.

Both losses score rows `(prediction, target)`: the online network's
prediction of one view against the target projection of the other view
(BYOL: a momentum target network; SimSiam: the online projection itself).
The target is under `stop_gradient`, so the gradient reaches the prediction
only, as both papers prescribe.
"""

import keras
from keras import ops

from keras_contrastive.losses._base import ContrastiveLoss, LossContract, views
from keras_contrastive.ops.similarity import l2_normalize


def _cosine(y_pred):
    """`(B,)` cosine of each row's prediction and stop-gradient target, float32 or wider.

    Normalizing by the largest entry first (`kc.ops.l2_normalize`) keeps any
    finite input finite; a zero vector normalizes to zero, cosine 0.
    """
    x = views(y_pred, min_batch=1)  # each row carries its own target: no negatives needed
    prediction = l2_normalize(x[:, 0])
    target = ops.stop_gradient(l2_normalize(x[:, 1]))
    return ops.sum(prediction * target, axis=-1)


def byol_loss(y_true, y_pred):
    """BYOL's loss of rows `(prediction, target)`: `2 − 2·cos(p, sg(z))` per row.

    With `p̄`, `z̄` the L2-normalized prediction and target, the value is
    `‖p̄ − z̄‖² = 2 − 2·⟨p̄, z̄⟩`, in `[0, 4]`. The target is under
    `stop_gradient`. BYOL symmetrizes over the two views, `L(p1, z'2) +
    L(p2, z'1)`: pass both directions as rows, or, as `kc.methods.BYOL`
    does, each example's two directions as one row of concatenated unit
    halves, whose value is their mean.

    Args:
        y_true: ignored (may be None).
        y_pred: `(B, 2, D)`: `y_pred[:, 0]` the predictions, `y_pred[:, 1]`
            the targets. Half precision is computed in float32.

    Returns:
        `(B,)` float32 (float64 for float64 input), one value per row.

    Example:

    >>> import numpy as np
    >>> rows = np.array([[[1.0, 0.0], [2.0, 0.0]], [[1.0, 0.0], [0.0, 3.0]]], "float32")
    >>> [float(v) for v in byol_loss(None, rows)]  # aligned, orthogonal
    [0.0, 2.0]

    Reference: Grill et al., "Bootstrap Your Own Latent: A New Approach to
    Self-Supervised Learning", NeurIPS 2020 (eq. 2).
    """
    del y_true
    return 2.0 - 2.0 * _cosine(y_pred)


def simsiam_loss(y_true, y_pred):
    """SimSiam's loss of rows `(prediction, target)`: `−cos(p, sg(z))` per row.

    The negative cosine similarity `D(p, z) = −⟨p/‖p‖, z/‖z‖⟩`, in `[−1, 1]`,
    with the target under `stop_gradient`. SimSiam symmetrizes over the two
    views, `½ D(p1, z2) + ½ D(p2, z1)`: pass both directions as rows, or,
    as `kc.methods.SimSiam` does, each example's two directions as one row
    of concatenated unit halves, whose value is their mean.

    Args:
        y_true: ignored (may be None).
        y_pred: `(B, 2, D)`: `y_pred[:, 0]` the predictions, `y_pred[:, 1]`
            the targets. Half precision is computed in float32.

    Returns:
        `(B,)` float32 (float64 for float64 input), one value per row.

    Example:

    >>> import numpy as np
    >>> rows = np.array([[[1.0, 0.0], [2.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0]]], "float32")
    >>> [float(v) for v in simsiam_loss(None, rows)]  # aligned, opposite
    [-1.0, 1.0]

    Reference: Chen & He, "Exploring Simple Siamese Representation
    Learning", CVPR 2021 (eq. 1-2).
    """
    del y_true
    return -_cosine(y_pred)


class _PredictionLoss(ContrastiveLoss):
    """A loss over rows `(prediction, target)` by the per-row function `fn`; no arguments."""

    contract = LossContract(labels="ignored", y_pred="pair")

    def call(self, y_true, y_pred):
        y_pred, _ = self._split_state(y_pred)
        return self.fn(y_true, y_pred)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class BYOLLoss(_PredictionLoss):
    """BYOL's loss, `2 − 2·cos(prediction, sg(target))`, over rows `(prediction, target)`.

    `y_pred` is `(B, 2, D)`: each row a prediction and the target it
    regresses onto; the target is under `stop_gradient` (see
    `kc.losses.byol_loss`). Non-contrastive: no negatives, `y_true` is
    ignored, and a batch of one row is fine. Calling the loss returns the
    mean over rows. The default loss of `kc.methods.BYOL`, whose rows hold
    both directions of an example (the prediction of view 1 against the
    target of view 2, and the reverse) and score their mean.

    Args:
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = BYOLLoss()
    >>> rows = np.random.default_rng(0).normal(size=(8, 2, 4)).astype("float32")
    >>> 0.0 <= float(loss(None, rows)) <= 4.0
    True

    Reference: Grill et al., "Bootstrap Your Own Latent: A New Approach to
    Self-Supervised Learning", NeurIPS 2020.
    """

    fn = staticmethod(byol_loss)

    def __init__(self, reduction="sum_over_batch_size", name="byol_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SimSiamLoss(_PredictionLoss):
    """SimSiam's loss, `−cos(prediction, sg(target))`, over rows `(prediction, target)`.

    `y_pred` is `(B, 2, D)`: each row a prediction and the target it
    regresses onto; the target is under `stop_gradient` (see
    `kc.losses.simsiam_loss`), which is what keeps SimSiam from collapsing.
    Non-contrastive: no negatives, `y_true` is ignored, and a batch of one
    row is fine. Calling the loss returns the mean over rows. The default
    loss of `kc.methods.SimSiam`, whose rows hold both directions of an
    example and score their mean.

    Args:
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = SimSiamLoss()
    >>> rows = np.random.default_rng(0).normal(size=(8, 2, 4)).astype("float32")
    >>> -1.0 <= float(loss(None, rows)) <= 1.0
    True

    Reference: Chen & He, "Exploring Simple Siamese Representation
    Learning", CVPR 2021.
    """

    fn = staticmethod(simsiam_loss)

    def __init__(self, reduction="sum_over_batch_size", name="simsiam_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
