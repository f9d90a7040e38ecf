"""NNCLR's loss: each view's nearest neighbour in the support set against the other view."""

import keras

from keras_contrastive.losses._base import ContrastiveLoss, LossContract, views
from keras_contrastive.losses.info_nce_loss import info_nce_loss
from keras_contrastive.ops._validation import check_positive
from keras_contrastive.ops.chunked import check_chunk_size

_LAYOUT = "(B, 4, D) rows (NN(z1), p2, NN(z2), p1)"


def nnclr_loss(y_true, y_pred, temperature=0.1, chunk_size=None):
    """NNCLR's symmetrized InfoNCE loss for each of B examples.

    With `s` the cosine similarity, the nearest neighbour `n1_i = NN(z1_i)`
    of the first view's projection is the query of the second view's
    prediction `p2_i`, against the predictions `p2_k` of the batch (of all
    replicas under a distribution strategy):
    `ℓ1_i = −log(e^{s(n1_i, p2_i)/τ} / Σ_k e^{s(n1_i, p2_k)/τ})`, and `ℓ2_i`
    the same with the views swapped. The softmax runs over the other view's
    predictions only: the two directions are separate InfoNCE terms, never
    each other's negatives, and example `i`'s loss is their mean
    `½ (ℓ1_i + ℓ2_i)`, so the batch mean is the paper's
    `½ [L(NN(z1), p2) + L(NN(z2), p1)]` (Algorithm 1).

    Args:
        y_true: ignored (may be None).
        y_pred: `(B, 4, D)` rows `(NN(z1), p2, NN(z2), p1)`: each view's
            nearest neighbour and the other view's prediction (normalized
            here). `kc.methods.NNCLR` builds them.
        temperature: `τ > 0`, a float or a scalar tensor. Default 0.1 (NNCLR).
        chunk_size: `None` (default) builds the `(B, B)` logits of each
            direction; an int `>= 1` scores the queries in blocks of that
            many rows, recomputed for the gradient (`kc.ops.map_row_chunks`).
            Same values.

    Returns:
        `(B,)` float32 per-example losses `½ (ℓ1_i + ℓ2_i)`.

    Example:

    >>> import numpy as np
    >>> rows = np.random.normal(size=(8, 4, 16)).astype("float32")
    >>> nnclr_loss(None, rows).shape
    TensorShape([8])

    Reference: Dwibedi et al., "With a Little Help from My Friends:
    Nearest-Neighbor Contrastive Learning of Visual Representations",
    ICCV 2021 (Eq. 2, Algorithm 1; τ = 0.1).
    """
    del y_true
    check_positive("temperature", temperature)
    check_chunk_size(chunk_size)
    rows = views(y_pred, num_views=4, layout=_LAYOUT)
    first = info_nce_loss(None, rows[:, 0:2], temperature, chunk_size=chunk_size)
    second = info_nce_loss(None, rows[:, 2:4], temperature, chunk_size=chunk_size)
    return 0.5 * (first + second)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class NNCLRLoss(ContrastiveLoss):
    """NNCLR's loss: `½ [InfoNCE(NN(z1), p2) + InfoNCE(NN(z2), p1)]`; `y_pred` is `(B, 4, D)`.

    Each row is `(NN(z1), p2, NN(z2), p1)`: the nearest neighbour of each
    view's projection in the support set, as the query of the other view's
    prediction (its projection where there is no predictor), whose negatives
    are the other predictions of that view in the batch (of all replicas
    under a distribution strategy). The two directions are separate InfoNCE
    terms (see `kc.losses.nnclr_loss`). `y_true` is ignored. Calling the
    loss returns the mean over the B examples. `kc.methods.NNCLR` feeds it.

    State inputs: `y_pred` may also be a dict `{"embeddings": (B, 4, D),
    "temperature": τ}`, with τ a scalar tensor or variable, used for that
    call instead of the configured one.

    Args:
        temperature: `τ > 0`. Default 0.1 (NNCLR).
        chunk_size: `None` (default, dense) or an int `>= 1`: score the
            queries in blocks of that many rows, recomputed in the backward
            pass, for memory `O(B · chunk_size)` instead of `O(B²)`.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> rows = np.random.normal(size=(8, 4, 16)).astype("float32")
    >>> float(NNCLRLoss(temperature=0.1)(None, rows)) > 0
    True

    Reference: Dwibedi et al., "With a Little Help from My Friends:
    Nearest-Neighbor Contrastive Learning of Visual Representations",
    ICCV 2021.
    """

    contract = LossContract(labels="ignored", y_pred="views", state=("temperature",))

    def __init__(
        self,
        temperature=0.1,
        chunk_size=None,
        reduction="sum_over_batch_size",
        name="nnclr_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        self.chunk_size = check_chunk_size(chunk_size)

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        temperature = state.get("temperature", self.temperature)
        return nnclr_loss(y_true, y_pred, temperature, self.chunk_size)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": float(self.temperature),
            "chunk_size": self.chunk_size,
        }
