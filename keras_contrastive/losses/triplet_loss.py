"""Triplet loss with explicit triplets or online mining."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates, global_sum
from keras_contrastive.losses._base import (
    ContrastiveLoss,
    LossContract,
    embeddings,
    integer_labels,
)
from keras_contrastive.ops import mining
from keras_contrastive.ops._validation import (
    check_choice,
    check_dim,
    check_non_negative,
    check_rank,
)
from keras_contrastive.ops.similarity import (
    DISTANCES,
    paired_distance,
    power_of_two_scale,
    scaled_pairwise_distance,
    times_power_of_two,
)

MINING = {
    "batch_all": mining.batch_all_triplet_values,
    "batch_hard": mining.batch_hard_triplet_values,
    "semi_hard": mining.semi_hard_triplet_values,
}


def triplet_loss(y_true, y_pred, margin=1.0, mining="batch_all", distance="euclidean"):
    """Triplet loss `max(0, d(a,p) − d(a,n) + α)`, explicit or mined online.

    Args:
        y_true: `(B,)` integer labels for `(B, D)` embeddings; ignored (may be
            None) for explicit triplets.
        y_pred: `(B, D)` embeddings to mine triplets from, or `(B, 3, D)`
            explicit (anchor, positive, negative) triplets.
        margin: `α >= 0`. Default 1.0.
        mining: `"batch_all"` (default: the mean over valid triplets with a
            positive loss), `"batch_hard"` (per anchor, hardest positive vs
            hardest negative) or `"semi_hard"` (per anchor–positive pair, the
            closest negative farther than the positive, else the farthest
            negative). See `keras_contrastive.ops.mining`.
        distance: `"euclidean"` (default), `"squared_euclidean"` or `"cosine"`.

    Returns:
        `(B,)` float32 values whose mean is the loss: per triplet for explicit
        triplets, per anchor (scaled as described in `ops.mining`) when mined.
        Under a distribution strategy each replica mines its anchors against
        the embeddings of all replicas, and the means run over all of them.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(8, 16)).astype("float32")
    >>> triplet_loss(np.array([0, 0, 1, 1, 2, 2, 3, 3]), x, mining="semi_hard").shape
    TensorShape([8])

    References: Schroff et al., "FaceNet", CVPR 2015; Hermans et al., "In
    Defense of the Triplet Loss for Person Re-Identification", 2017.
    """
    check_non_negative("margin", margin)
    check_choice("mining", mining, MINING)
    check_choice("distance", distance, DISTANCES)
    y_pred = ops.convert_to_tensor(y_pred)
    check_rank("y_pred", y_pred, (2, 3), "(B, D) with labels, or (B, 3, D) triplets")
    if len(y_pred.shape) == 3:
        check_dim("y_pred", y_pred, 1, 3, "(B, 3, D) (anchor, positive, negative)")
        x = embeddings(y_pred, min_batch=1)  # each triplet holds its negative
        return ops.maximum(_explicit_gap(x, distance) + margin, 0.0)
    x = embeddings(y_pred)
    labels = integer_labels(y_true, x)
    # Local anchors mined against the candidates of every replica (outside a
    # strategy the gather is the identity and `global_sum` returns its input).
    candidates, offset = gather_candidates(x)
    candidate_labels, _ = gather_candidates(labels)
    scaled = scaled_pairwise_distance(x, candidates, distance=distance)
    return _in_scaled_units(
        lambda d, m: MINING[mining](labels, d, m, candidate_labels, offset, global_sum),
        scaled,
        margin,
    )


def _explicit_gap(x, distance):
    """`d(a, p) - d(a, n)` of `(B, 3, D)` triplets, finite wherever the answer is.

    Squared distances are taken as `(e_ap - e_an)(e_ap + e_an)` from the
    euclidean ones, so points 1e20 apart (squares beyond float32) give the
    gap's sign and size (or ±inf) instead of `inf - inf = NaN`.
    """
    if distance != "squared_euclidean":
        return paired_distance(x[:, 0], x[:, 1], distance) - paired_distance(
            x[:, 0], x[:, 2], distance
        )
    e_ap = paired_distance(x[:, 0], x[:, 1])
    e_an = paired_distance(x[:, 0], x[:, 2])
    return (e_ap - e_an) * (0.5 * e_ap + 0.5 * e_an) * 2.0


def _in_scaled_units(mine, scaled, margin):
    """Mines on distances in units of `2**k` (`scaled_pairwise_distance`), then scales back.

    The mined hinge `max(0, d_ap - d_an + m)` is positively homogeneous in
    `(distances, margin)`, so this equals mining the distances themselves,
    and stays finite where they overflow (squared distances of 1e20 points).
    The unit is raised, if needed, to within `2**64` of the margin, so that
    the margin in units stays finite when the distances are tiny (1e-20).
    """
    d_hat, k = scaled
    margin = ops.cast(margin, d_hat.dtype)
    unit = ops.maximum(ops.cast(k, d_hat.dtype), power_of_two_scale(margin) - 64.0)
    d_hat = times_power_of_two(d_hat, k - unit)
    return times_power_of_two(mine(d_hat, times_power_of_two(margin, -unit)), unit)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class TripletLoss(ContrastiveLoss):
    """Triplet loss: `(B,)` int labels with `(B, D)` embeddings, or `(B, 3, D)` triplets.

    Calling the loss returns the mean defined by the mining strategy (see
    `triplet_loss`). Its `contract` is what a training method feeds: integer
    labels with `(B, D)` embeddings; the explicit triplets are for calling the
    loss directly.

    Args:
        margin: `α >= 0`. Default 1.0 (tensorflow-addons' default; FaceNet
            used 0.2 on unit-norm embeddings).
        mining: `"batch_all"` (default), `"batch_hard"` or `"semi_hard"`.
        distance: `"euclidean"` (default), `"squared_euclidean"`, `"cosine"`.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(8, 16)).astype("float32")
    >>> loss = TripletLoss(mining="batch_hard")
    >>> float(loss(np.array([0, 0, 1, 1, 2, 2, 3, 3]), x)) >= 0
    True

    References: Schroff et al., "FaceNet", CVPR 2015; Hermans et al. 2017.
    """

    contract = LossContract(labels="integer", y_pred="single")

    def __init__(
        self,
        margin=1.0,
        mining="batch_all",
        distance="euclidean",
        reduction="sum_over_batch_size",
        name="triplet_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = check_non_negative("margin", margin)
        self.mining = check_choice("mining", mining, MINING)
        self.distance = check_choice("distance", distance, DISTANCES)

    def _labels_used(self, y_pred):
        return len(getattr(y_pred, "shape", ())) != 3

    def call(self, y_true, y_pred):
        y_pred, _ = self._split_state(y_pred)
        return triplet_loss(y_true, y_pred, self.margin, self.mining, self.distance)

    def get_config(self):
        return {
            **super().get_config(),
            "margin": float(self.margin),
            "mining": self.mining,
            "distance": self.distance,
        }
