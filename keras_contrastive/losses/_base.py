"""What every loss shares: input layout checks and the thin Loss base class."""

import keras
from keras import ops

from keras_contrastive.ops import _validation as v
from keras_contrastive.ops.similarity import compute_dtype


def views(y_pred, num_views=2, layout="(B, 2, D)", min_batch=2):
    """Checks a `(B, V, D)` stack of views, upcasts it, and checks it is finite."""
    y_pred = ops.convert_to_tensor(y_pred)
    v.check_rank("y_pred", y_pred, (3,), layout)
    if num_views is not None:
        v.check_dim("y_pred", y_pred, 1, num_views, layout)
    return embeddings(y_pred, min_batch=min_batch)


def embeddings(x, name="y_pred", min_batch=2):
    """Upcasts half-precision `x` to float32; checks its batch and finiteness.

    `min_batch=2` for the losses whose negatives are the other examples (a
    batch of 1 has none), 1 for those that carry their own (pairs, triplets).
    """
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, compute_dtype(x))
    x = v.check_min_batch(name, x, min_batch, "to have negatives" if min_batch > 1 else "")
    return v.check_finite(name, x)


def integer_labels(y_true, y_pred, name="y_true"):
    """Checks `(B,)` labels matching `y_pred`'s batch; integers keep their dtype.

    Float labels are refused at the class boundary (`ContrastiveLoss.__call__`);
    the pure functions accept them and cast them to int32.
    """
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    v.check_rank(name, y_true, (1,), "(B,)")
    y_true = v.check_same_batch(name, y_true, "y_pred", y_pred)
    if not ops.is_tensor(y_true) or "int" not in str(y_true.dtype):
        y_true = ops.cast(y_true, "int32")
    return y_true


class ContrastiveLoss(keras.losses.Loss):
    """Base class: a `keras.losses.Loss` over a pure per-example function.

    Subclasses set `fn` (the pure function) and `labels` (`"ignored"`,
    `"integer"` or `"any"`), store their arguments, and list them in
    `get_config`. Integer labels are checked here and reach `call` as the
    user's integers: `keras.losses.Loss.__call__` casts `y_true` to the loss
    dtype, and float32 rounds ids >= 2**24 together. `y_true=None` is accepted
    where labels are ignored.
    """

    labels = "ignored"

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels_used = self.labels != "ignored" and self._labels_used(y_pred)
        if y_true is None:
            if labels_used:
                raise ValueError(
                    f"{type(self).__name__} needs labels: `y_true` must be (B,) "
                    "class ids. Received: y_true=None"
                )
            y_true = ops.zeros(ops.shape(y_pred)[:1], "int32")
        if not (labels_used and self.labels == "integer"):
            return super().__call__(y_true, y_pred, sample_weight)
        v.check_integer_labels("y_true", y_true)
        with keras.name_scope(self.name):
            converted = keras.tree.map_structure(
                lambda x: ops.convert_to_tensor(x, dtype=self.dtype), y_pred
            )
            values = self.call(ops.convert_to_tensor(y_true), converted)
        reduction = _Reduction(name=self.name, reduction=self.reduction, dtype=self.dtype)
        return reduction(values, y_pred, sample_weight)

    def _labels_used(self, y_pred):
        return True


class _Reduction(keras.losses.Loss):
    """Keras' own reduction (sample weights, masks, replica scaling) of given values.

    Called as `(values, y_pred, sample_weight)`: `y_pred` is passed only for
    its Keras mask, as `keras.losses.Loss.__call__` reads it.
    """

    def call(self, values, y_pred):
        return values
