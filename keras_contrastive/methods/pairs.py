"""Pairs with a similar / different flag: the contrastive margin loss's method."""

import keras

from keras_contrastive.losses import ContrastiveMarginLoss
from keras_contrastive.methods._data import (
    check_sample_weight,
    flat_ids,
    stack_pair,
    structure_error,
    unpack,
)
from keras_contrastive.methods.method import Method, Prepared


@keras.saving.register_keras_serializable(package="keras_contrastive")
class Pairs(Method):
    """Given pairs, each flagged similar (1) or different (0) (Hadsell et al. 2006).

    Both inputs of a pair go through the model's `encoder` and
    `projection_head`; the loss (default `kc.losses.ContrastiveMarginLoss()`)
    receives `(B, 2, D)` and the flags. Losses of contract `labels="pairs"`,
    `y_pred="pair"` train here.

    Batch layout: `((x_1, x_2), similar)` with `(B,)` 1/0 flags.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     method=kc.methods.Pairs(),
    ... )
    >>> model.compile(optimizer="adam", loss=kc.losses.ContrastiveMarginLoss(margin=1.0))

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by
    Learning an Invariant Mapping", CVPR 2006.
    """

    layout = "`((x_1, x_2), similar)`: pairs and their (B,) flags, 1 similar / 0 different"
    labels = ("pairs",)
    y_pred = ("pair",)

    def default_loss(self):
        return ContrastiveMarginLoss()

    def prepare(self, model, data, training, seed):
        x, y, sample_weight = unpack(data, self.layout)
        if y is None or not isinstance(x, (tuple, list)):
            raise structure_error(self.layout, data, "The margin loss scores given pairs.")
        pairs = stack_pair(("x_1", "x_2"), x, data, self.layout)
        similar = flat_ids("similar", y, data, self.layout, pairs)
        return Prepared(pairs, similar, check_sample_weight(sample_weight, pairs))
