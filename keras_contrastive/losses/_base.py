"""What every loss shares: input layout checks and the thin Loss base class."""

import keras
from keras import ops

from keras_contrastive.ops import _validation as v
from keras_contrastive.ops.similarity import compute_dtype


def views(y_pred, num_views=2, layout="(B, 2, D)"):
    """Checks a `(B, V, D)` stack of views, upcasts it, and checks it is finite."""
    y_pred = ops.convert_to_tensor(y_pred)
    v.check_rank("y_pred", y_pred, (3,), layout)
    if num_views is not None:
        v.check_dim("y_pred", y_pred, 1, num_views, layout)
    return embeddings(y_pred)


def embeddings(x, name="y_pred", min_batch=2):
    """Upcasts half-precision `x` to float32; checks its batch and finiteness."""
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, compute_dtype(x))
    v.check_min_batch(name, x, min_batch)
    return v.check_finite(name, x)


def integer_labels(y_true, y_pred, name="y_true"):
    """Checks `(B,)` labels matching `y_pred`'s batch, returned as int32.

    Float labels are refused at the class boundary (`ContrastiveLoss.__call__`),
    where their dtype is still the user's; inside `call`, Keras has cast them.
    """
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    v.check_rank(name, y_true, (1,), "(B,)")
    v.check_same_batch(name, y_true, "y_pred", y_pred)
    if not ops.is_tensor(y_true) or "int" not in str(y_true.dtype):
        y_true = ops.cast(y_true, "int32")
    return y_true


class ContrastiveLoss(keras.losses.Loss):
    """Base class: a `keras.losses.Loss` over a pure per-example function.

    Subclasses set `fn` (the pure function) and `labels` (`"ignored"`,
    `"integer"` or `"any"`), store their arguments, and list them in
    `get_config`. Integer labels are checked here, before Keras casts `y_true`
    to the loss dtype; `y_true=None` is accepted where labels are ignored.
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
        elif labels_used and self.labels == "integer":
            v.check_integer_labels("y_true", y_true)
        return super().__call__(y_true, y_pred, sample_weight)

    def _labels_used(self, y_pred):
        return True
