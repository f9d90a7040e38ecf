"""Contrastive margin loss over labelled pairs (Hadsell, Chopra, LeCun 2006)."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_contrastive.losses._base import ContrastiveLoss, LossContract, views
from keras_contrastive.ops._validation import (
    check_bool,
    check_choice,
    check_non_negative,
    check_rank,
    check_same_batch,
)
from keras_contrastive.ops.similarity import paired_distance

_PAIR_DISTANCES = ("euclidean", "cosine")


def _similar_flags(y_true, y_pred):
    """`(B,)` flags q (1 same, 0 different) as floats; other values are refused.

    Eagerly this raises `ValueError`; in a `tf.function` a `tf.debugging`
    assert raises `tf.errors.InvalidArgumentError` with the same message.
    """
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    check_rank("y_true", y_true, (1,), "(B,) with 1 for similar and 0 for dissimilar")
    y_true = check_same_batch("y_true", y_true, "y_pred", y_pred)
    message = "`y_true` must be 1 for similar and 0 for dissimilar pairs."
    if tf.executing_eagerly():
        values = np.unique(ops.convert_to_numpy(y_true))
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"{message} Received values: {values[:10].tolist()}")
    else:
        is_flag = tf.logical_or(tf.equal(y_true, 0), tf.equal(y_true, 1))
        with tf.control_dependencies(
            [tf.debugging.Assert(tf.reduce_all(is_flag), [message, "Received values:", y_true])]
        ):
            y_true = tf.identity(y_true)
    return ops.cast(y_true, y_pred.dtype)


def contrastive_margin_loss(y_true, y_pred, margin=1.0, squared=True, distance="euclidean"):
    """Contrastive margin loss for each of B pairs.

    `L = q·d² + (1−q)·max(0, m − d)²`, or with `squared=False` the linear form
    `L = q·d + (1−q)·max(0, m − d)`.

    Args:
        y_true: `(B,)` q: 1 for a similar pair, 0 for a dissimilar one.
        y_pred: `(B, 2, D)` the two embeddings of each pair.
        margin: `m >= 0`. Default 1.0.
        squared: squared (default, the original form) or linear terms.
        distance: `"euclidean"` (default) or `"cosine"` (`1 − s`).

    Returns:
        `(B,)` float32 per-pair losses.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(4, 2, 8)).astype("float32")
    >>> contrastive_margin_loss(np.array([1, 0, 1, 0]), pairs).shape
    TensorShape([4])

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by
    Learning an Invariant Mapping", CVPR 2006.
    """
    check_non_negative("margin", margin)
    check_choice("distance", distance, _PAIR_DISTANCES)
    y_pred = views(y_pred, layout="(B, 2, D) pairs", min_batch=1)
    q = _similar_flags(y_true, y_pred)
    d = paired_distance(y_pred[:, 0], y_pred[:, 1], distance)
    gap = ops.maximum(margin - d, 0.0)
    if squared:
        d, gap = ops.square(d), ops.square(gap)
    # `where`, not `q·d + (1−q)·gap`: a dissimilar pair far apart has d² = inf, and 0·inf = NaN.
    return ops.where(q > 0.5, d, gap)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class ContrastiveMarginLoss(ContrastiveLoss):
    """Contrastive margin loss: `y_true` `(B,)` 1/0 same/different, `y_pred` `(B, 2, D)`.

    Calling the loss returns the mean over pairs.

    Args:
        margin: `m >= 0`. Default 1.0 (Hadsell et al. 2006).
        squared: squared terms (default) or the linear form.
        distance: `"euclidean"` (default) or `"cosine"`.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(4, 2, 8)).astype("float32")
    >>> float(ContrastiveMarginLoss()(np.array([1, 0, 1, 0]), pairs)) >= 0
    True

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by
    Learning an Invariant Mapping", CVPR 2006.
    """

    contract = LossContract(labels="pairs", y_pred="pair")

    def __init__(
        self,
        margin=1.0,
        squared=True,
        distance="euclidean",
        reduction="sum_over_batch_size",
        name="contrastive_margin_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = check_non_negative("margin", margin)
        self.squared = check_bool("squared", squared)
        self.distance = check_choice("distance", distance, _PAIR_DISTANCES)

    def call(self, y_true, y_pred):
        y_pred, _ = self._split_state(y_pred)
        return contrastive_margin_loss(y_true, y_pred, self.margin, self.squared, self.distance)

    def get_config(self):
        return {
            **super().get_config(),
            "margin": float(self.margin),
            "squared": self.squared,
            "distance": self.distance,
        }
