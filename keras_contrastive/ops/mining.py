"""Online triplet mining over a batch of labelled embeddings.

Each function takes integer `labels` `(B,)`, a pairwise distance matrix
`(B, B)` and a `margin`, and returns `(B,)` per-anchor values whose **mean** is
the mined triplet loss. Anchors that have no valid triplet contribute 0 and the
others are scaled by `B / num_valid`, so the mean runs over what the mining
strategy defines, not over the whole batch.

Under a distribution strategy the anchors are one replica's `B` rows and the
candidates the `N` rows gathered from all replicas: `distances` is `(B, N)`,
`candidate_labels` `(N,)`, anchor `i` is candidate `offset + i`, and
`sum_counts` (`kc.distribute.global_sum`) makes `B` and `num_valid` the
counts over all replicas, so that the replicas' means add up to the loss of
the global batch.

Nothing here holds a `(B, B, B)` tensor of triplets: batch-all and semi-hard
sort each anchor's distances to its negatives and binary-search them, in
O(B² log B) time and O(B²) memory. Half-precision distances are mined in
float32; the values come back in the distances' dtype.
"""

from keras import ops

from keras_contrastive.ops.masks import label_mask, positive_mask
from keras_contrastive.ops.similarity import compute_dtype

_BIG = 1e30  # finite stand-in for +inf when masking distances


def _masked_min(x, mask, axis):
    return ops.min(ops.where(mask, x, _BIG), axis=axis)


def _masked_max(x, mask, axis):
    return ops.max(ops.where(mask, x, -_BIG), axis=axis)


def _spread(per_anchor_sum, num_valid, sum_counts):
    """Scales per-anchor sums so that their mean is `sum / num_valid`.

    With `sum_counts`, the batch and `num_valid` are summed over replicas first.
    """
    dtype = per_anchor_sum.dtype
    counts = ops.stack([ops.cast(ops.shape(per_anchor_sum)[0], dtype), ops.cast(num_valid, dtype)])
    if sum_counts is not None:
        counts = sum_counts(counts)
    return per_anchor_sum * counts[0] / ops.maximum(counts[1], 1.0)


def _masks(labels, candidate_labels, offset):
    """`(positive, negative)`: `(B, N)` bool masks of anchors against candidates."""
    if candidate_labels is None:
        return positive_mask(labels), ops.logical_not(label_mask(labels))
    same = label_mask(labels, candidate_labels)
    rows, columns = ops.shape(same)
    not_self = ops.arange(columns)[None, :] != (ops.arange(rows) + offset)[:, None]
    return ops.logical_and(same, not_self), ops.logical_not(same)


def _take(x, index):
    return ops.take_along_axis(x, index, axis=1)


def _sorted_negatives(negative, distances):
    """Each row's distances to its negatives, ascending, then `_BIG`s: `(B, N)`; and their count."""
    sorted_rows = ops.sort(ops.where(negative, distances, _BIG), axis=1)
    return sorted_rows, ops.sum(ops.cast(negative, "int32"), axis=1)


def _prefix_sums(x):
    """Running sums of each row of `(N, M)` `x`, from a leading 0: `(N, M + 1)`."""
    return ops.pad(ops.cumsum(x, axis=1), [[0, 0], [1, 0]])


def _count_leading(sorted_rows, holds):
    """Per `(a, j)`, how many leading entries of row `a` of `sorted_rows` satisfy `holds`.

    `holds` maps a `(B, B)` tensor whose `(a, j)` entry is taken from row `a`
    to a `(B, B)` bool, and must hold on a prefix of each row. A batched binary
    search by gathers, O(B² log B) time and O(B²) memory, compiled or not:
    under XLA, `tf.searchsorted` compares every value with every entry, a
    `(B, B, B)` tensor.
    """
    size = ops.shape(sorted_rows)[1]

    def halve(low, high):
        middle = (low + high) // 2
        entries = _take(sorted_rows, ops.minimum(middle, size - 1))
        after = ops.logical_and(low < high, holds(entries))
        return ops.where(after, middle + 1, low), ops.where(after, high, middle)

    low = ops.zeros_like(sorted_rows, "int32")
    high = ops.full_like(sorted_rows, size, "int32")
    low, _ = ops.while_loop(lambda low, high: ops.any(low < high), halve, (low, high))
    return low


def _take_sharing_ties(sorted_rows, index):
    """`sorted_rows[index]` per row, its gradient shared evenly by the entries equal to it.

    As `ops.min` and `ops.max` share theirs between tied entries: the value is
    the entry, the gradient that of the mean of its group of equal entries.
    """
    rows, size = ops.shape(sorted_rows)
    # Number the runs of equal entries, across all rows, and average each run.
    starts = ops.concatenate(
        [ops.ones_like(sorted_rows[:, :1], "bool"), sorted_rows[:, 1:] > sorted_rows[:, :-1]],
        axis=1,
    )
    group = ops.cumsum(ops.cast(starts, "int32"), axis=1) - 1 + ops.arange(rows)[:, None] * size
    flat_group = ops.reshape(group, (-1,))
    sums = ops.segment_sum(ops.reshape(sorted_rows, (-1,)), flat_group, rows * size)
    counts = ops.segment_sum(ops.ones_like(flat_group, sorted_rows.dtype), flat_group, rows * size)
    group_mean = ops.take(sums / ops.maximum(counts, 1.0), _take(group, index))
    value = _take(sorted_rows, index)
    return ops.stop_gradient(value) + (group_mean - ops.stop_gradient(group_mean))


def batch_all_triplet_values(
    labels, distances, margin, candidate_labels=None, offset=0, sum_counts=None
):
    """Batch-all mining: the mean over valid triplets whose loss is positive.

    A triplet `(a, p, n)` is valid when `a != p`, `labels[a] == labels[p]` and
    `labels[a] != labels[n]`; its loss is `max(0, d(a,p) - d(a,n) + margin)`.

    Args:
        labels: `(B,)` integer labels.
        distances: `(B, B)` pairwise distances, e.g. from `pairwise_distance`;
            `(B, N)` to `N` candidates with `candidate_labels`.
        margin: float, the margin `alpha` of the triplet loss.
        candidate_labels: `None` (default: the candidates are the anchors) or
            `(N,)` integer labels of the candidates, e.g. gathered from all
            replicas with `kc.distribute.gather_candidates`.
        offset: int, the candidate that anchor 0 is (its own row in the
            gathered batch). Default 0.
        sum_counts: `None` (default) or a function summing a count tensor over
            replicas, `kc.distribute.global_sum`: the mean then runs over the
            anchors and triplets of all replicas.

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
    distances = ops.convert_to_tensor(distances)
    dtype = distances.dtype
    distances = ops.cast(distances, compute_dtype(distances))
    pos, neg = _masks(labels, candidate_labels, offset)
    sorted_neg, num_neg = _sorted_negatives(neg, distances)

    def loss(d_an):  # the triplet loss before `max(0, .)`, rounded as the (B, B, B) formula was
        return distances - d_an + margin

    # Per (a, p), the negatives with a loss are the closest `active` ones, and
    # their losses sum to `active * (d(a,p) + margin) - (their distances)`.
    # Losses of exactly 0 are active (`tf.maximum` passes them the gradient)
    # but do not count as positive.
    active = _count_leading(sorted_neg, lambda d_an: loss(d_an) >= 0.0)
    positive = _count_leading(sorted_neg, lambda d_an: loss(d_an) > 1e-16)
    num_positive = ops.sum(ops.cast(ops.where(pos, positive, 0), distances.dtype))
    # Shifted by each anchor's median negative distance, the running sums stay
    # small, and so does float32 cancellation in the difference.
    center = ops.stop_gradient(_take(sorted_neg, (num_neg // 2)[:, None]))
    prefix = _prefix_sums(sorted_neg - center)
    hinge = distances - center + margin
    sums = ops.cast(active, distances.dtype) * hinge - _take(prefix, active)
    values = _spread(ops.sum(ops.where(pos, sums, 0.0), axis=1), num_positive, sum_counts)
    return ops.cast(values, dtype)


def batch_hard_triplet_values(
    labels, distances, margin, candidate_labels=None, offset=0, sum_counts=None
):
    """Batch-hard mining: per anchor, its farthest positive vs closest negative.

    The mean runs over the anchors that have at least one positive and one
    negative in the batch.

    Args:
        labels: `(B,)` integer labels.
        distances: `(B, B)` pairwise distances, e.g. from `pairwise_distance`;
            `(B, N)` to `N` candidates with `candidate_labels`.
        margin: float, the margin `alpha` of the triplet loss.
        candidate_labels: `None` (default: the candidates are the anchors) or
            `(N,)` integer labels of the candidates, e.g. gathered from all
            replicas with `kc.distribute.gather_candidates`.
        offset: int, the candidate that anchor 0 is (its own row in the
            gathered batch). Default 0.
        sum_counts: `None` (default) or a function summing a count tensor over
            replicas, `kc.distribute.global_sum`: the mean then runs over the
            anchors and triplets of all replicas.

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
    pos, neg = _masks(labels, candidate_labels, offset)
    hardest_pos = _masked_max(distances, pos, axis=1)
    hardest_neg = _masked_min(distances, neg, axis=1)
    valid = ops.logical_and(ops.any(pos, axis=1), ops.any(neg, axis=1))
    losses = ops.where(valid, ops.maximum(hardest_pos - hardest_neg + margin, 0.0), 0.0)
    return _spread(losses, ops.sum(ops.cast(valid, "int32")), sum_counts)


def semi_hard_triplet_values(
    labels, distances, margin, candidate_labels=None, offset=0, sum_counts=None
):
    """Semi-hard mining, as FaceNet and tensorflow-addons' `TripletSemiHardLoss`.

    For each anchor–positive pair, the negative is the closest one that is
    farther from the anchor than the positive; if there is none, the farthest
    negative. The mean runs over all anchor–positive pairs whose anchor has a
    negative in the batch.

    Args:
        labels: `(B,)` integer labels.
        distances: `(B, B)` pairwise distances, e.g. from `pairwise_distance`;
            `(B, N)` to `N` candidates with `candidate_labels`.
        margin: float, the margin `alpha` of the triplet loss.
        candidate_labels: `None` (default: the candidates are the anchors) or
            `(N,)` integer labels of the candidates, e.g. gathered from all
            replicas with `kc.distribute.gather_candidates`.
        offset: int, the candidate that anchor 0 is (its own row in the
            gathered batch). Default 0.
        sum_counts: `None` (default) or a function summing a count tensor over
            replicas, `kc.distribute.global_sum`: the mean then runs over the
            anchors and triplets of all replicas.

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
    distances = ops.convert_to_tensor(distances)
    dtype = distances.dtype
    distances = ops.cast(distances, compute_dtype(distances))
    pos, neg = _masks(labels, candidate_labels, offset)
    sorted_neg, num_neg = _sorted_negatives(neg, distances)
    # The first negative farther than the positive; past the last negative
    # there is none, and the farthest negative is taken instead.
    first_farther = _count_leading(sorted_neg, lambda d_an: d_an <= distances)
    farthest = ops.maximum(num_neg - 1, 0)[:, None]
    index = ops.where(first_farther < num_neg[:, None], first_farther, farthest)
    chosen = _take_sharing_ties(sorted_neg, index)
    valid = ops.logical_and(pos, (num_neg > 0)[:, None])
    losses = ops.where(valid, ops.maximum(distances - chosen + margin, 0.0), 0.0)
    values = _spread(ops.sum(losses, axis=1), ops.sum(ops.cast(valid, "int32")), sum_counts)
    return ops.cast(values, dtype)
