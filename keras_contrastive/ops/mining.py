"""Online triplet mining over a batch of labelled embeddings.

Each function takes integer `labels` `(B,)`, a pairwise distance matrix
`(B, B)` and a `margin`, and returns `(B,)` per-anchor values whose **mean** is
the mined triplet loss. Anchors that have no valid triplet contribute 0 and the
others are scaled by `B / num_valid`, so the mean runs over what the mining
strategy defines, not over the whole batch.
"""

from keras import ops

from keras_contrastive.ops.masks import label_mask, positive_mask

_BIG = 1e30  # finite stand-in for +inf when masking distances


def _masked_min(x, mask, axis):
    return ops.min(ops.where(mask, x, _BIG), axis=axis)


def _masked_max(x, mask, axis):
    return ops.max(ops.where(mask, x, -_BIG), axis=axis)


def _spread(per_anchor_sum, num_valid):
    """Scales per-anchor sums so that their mean is `sum / num_valid`."""
    batch = ops.cast(ops.shape(per_anchor_sum)[0], per_anchor_sum.dtype)
    num_valid = ops.cast(num_valid, per_anchor_sum.dtype)
    return per_anchor_sum * batch / ops.maximum(num_valid, 1.0)


def batch_all_triplet_values(labels, distances, margin):
    """Batch-all mining: the mean over valid triplets whose loss is positive.

    A triplet `(a, p, n)` is valid when `a != p`, `labels[a] == labels[p]` and
    `labels[a] != labels[n]`; its loss is `max(0, d(a,p) - d(a,n) + margin)`.

    Args:
        labels: `(B,)` integer labels.
        distances: `(B, B)` pairwise distances, e.g. from `pairwise_distance`.
        margin: float, the margin `alpha` of the triplet loss.

    Returns:
        `(B,)` per-anchor values whose mean is the mined loss.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> labels = np.array([0, 0, 1, 1])
    >>> distances = kc.ops.pairwise_distance(np.array([[0.0], [1.0], [1.5], [3.0]]))
    >>> values = kc.ops.batch_all_triplet_values(labels, distances, margin=1.0)  # (4,)
    >>> float(np.mean(values))  # 1.1

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person
    Re-Identification", 2017.
    """
    pos = positive_mask(labels)
    neg = ops.logical_not(label_mask(labels))
    valid = ops.logical_and(pos[:, :, None], neg[:, None, :])
    losses = distances[:, :, None] - distances[:, None, :] + margin
    losses = ops.where(valid, ops.maximum(losses, 0.0), 0.0)
    num_positive = ops.sum(ops.cast(losses > 1e-16, losses.dtype))
    return _spread(ops.sum(losses, axis=(1, 2)), num_positive)


def batch_hard_triplet_values(labels, distances, margin):
    """Batch-hard mining: per anchor, its farthest positive vs closest negative.

    The mean runs over the anchors that have at least one positive and one
    negative in the batch.

    Args:
        labels: `(B,)` integer labels.
        distances: `(B, B)` pairwise distances, e.g. from `pairwise_distance`.
        margin: float, the margin `alpha` of the triplet loss.

    Returns:
        `(B,)` per-anchor values whose mean is the mined loss.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> labels = np.array([0, 0, 1, 1])
    >>> distances = kc.ops.pairwise_distance(np.array([[0.0], [1.0], [1.5], [3.0]]))
    >>> values = kc.ops.batch_hard_triplet_values(labels, distances, margin=1.0)  # (4,)
    >>> float(np.mean(values))  # 1.125

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person
    Re-Identification", 2017.
    """
    pos = positive_mask(labels)
    neg = ops.logical_not(label_mask(labels))
    hardest_pos = _masked_max(distances, pos, axis=1)
    hardest_neg = _masked_min(distances, neg, axis=1)
    valid = ops.logical_and(ops.any(pos, axis=1), ops.any(neg, axis=1))
    losses = ops.where(valid, ops.maximum(hardest_pos - hardest_neg + margin, 0.0), 0.0)
    return _spread(losses, ops.sum(ops.cast(valid, "int32")))


def semi_hard_triplet_values(labels, distances, margin):
    """Semi-hard mining, as FaceNet and tensorflow-addons' `TripletSemiHardLoss`.

    For each anchor–positive pair, the negative is the closest one that is
    farther from the anchor than the positive; if there is none, the farthest
    negative. The mean runs over all anchor–positive pairs whose anchor has a
    negative in the batch.

    Args:
        labels: `(B,)` integer labels.
        distances: `(B, B)` pairwise distances, e.g. from `pairwise_distance`.
        margin: float, the margin `alpha` of the triplet loss.

    Returns:
        `(B,)` per-anchor values whose mean is the mined loss.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> labels = np.array([0, 0, 1, 1])
    >>> distances = kc.ops.pairwise_distance(np.array([[0.0], [1.0], [1.5], [3.0]]))
    >>> values = kc.ops.semi_hard_triplet_values(labels, distances, margin=1.0)  # (4,)
    >>> float(np.mean(values))  # 0.5

    Reference: Schroff et al., "FaceNet: A Unified Embedding for Face
    Recognition and Clustering", CVPR 2015.
    """
    pos = positive_mask(labels)
    neg = ops.logical_not(label_mask(labels))
    d_ap = distances[:, :, None]
    d_an = distances[:, None, :]
    semi_hard = ops.logical_and(neg[:, None, :], d_an > d_ap)
    closest_semi_hard = _masked_min(ops.broadcast_to(d_an, ops.shape(semi_hard)), semi_hard, axis=2)
    farthest = _masked_max(distances, neg, axis=1)[:, None]
    chosen = ops.where(ops.any(semi_hard, axis=2), closest_semi_hard, farthest)
    valid = ops.logical_and(pos, ops.any(neg, axis=1)[:, None])
    losses = ops.where(valid, ops.maximum(distances - chosen + margin, 0.0), 0.0)
    return _spread(ops.sum(losses, axis=1), ops.sum(ops.cast(valid, "int32")))
