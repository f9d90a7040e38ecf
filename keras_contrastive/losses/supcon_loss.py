"""Supervised contrastive loss (SupCon, L_out)."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates, global_sum
from keras_contrastive.losses._base import (
    ContrastiveLoss,
    LossContract,
    embeddings,
    integer_labels,
    own_negatives,
)
from keras_contrastive.ops._validation import check_positive, check_rank
from keras_contrastive.ops.chunked import check_chunk_size, map_row_chunks
from keras_contrastive.ops.similarity import l2_normalize
from keras_contrastive.ops.softmax import multi_positive_cross_entropy


def supcon_loss(
    y_true, y_pred, temperature=0.1, base_temperature=None, chunk_size=None, hard_negatives=None
):
    """Supervised contrastive loss for each anchor (every view of every example).

    Anchor `i` with positives `P(i)` (the other views with its label) has loss
    `-(τ/τ_base) / |P(i)| Σ_{p∈P(i)} log(e^{s_ip/τ} / Σ_{a≠i} e^{s_ia/τ})`.
    Anchors without a positive are masked out: they get 0, and the others are
    scaled by `n_anchors / n_valid`, so the mean of the returned values is the
    mean over anchors that have a positive (over all replicas under a
    distribution strategy, whose views are the candidates).

    Args:
        y_true: `(B,)` integer class labels.
        y_pred: `(B, D)` one view, or `(B, V, D)` V views per example.
        temperature: `τ > 0`. Default 0.1.
        base_temperature: `τ_base`; `None` means the factor `τ/τ_base` is 1.
        chunk_size: `None` (default) builds the whole `(BV, BV)` similarity
            matrix; an int `>= 1` scores the anchors in blocks of that many
            rows and recomputes each block for the gradient
            (`kc.ops.map_row_chunks`), so memory grows as `BV · chunk_size`.
        hard_negatives: optional `(B, H, D)` extra negatives of each example
            (mined, e.g. by `kc.callbacks.HardNegativeMiner`: near neighbours
            of other classes), in the normaliser of its views' anchors only.

    Returns:
        `(B,)` for `(B, D)` input, `(B, V)` for `(B, V, D)` input.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> supcon_loss(np.array([0, 1, 0, 1, 2, 2, 3, 3]), x).shape
    TensorShape([8, 2])
    >>> mined = np.random.normal(size=(8, 3, 16)).astype("float32")
    >>> supcon_loss(np.array([0, 1, 0, 1, 2, 2, 3, 3]), x, hard_negatives=mined).shape
    TensorShape([8, 2])

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """
    check_positive("temperature", temperature)
    if base_temperature is not None:
        check_positive("base_temperature", base_temperature)
    check_chunk_size(chunk_size)
    y_pred = ops.convert_to_tensor(y_pred)
    check_rank("y_pred", y_pred, (2, 3), "(B, D) or (B, V, D)")
    single_view = len(y_pred.shape) == 2
    z = l2_normalize(embeddings(y_pred[:, None] if single_view else y_pred))
    labels = integer_labels(y_true, z)
    own = own_negatives(hard_negatives, z)
    local, num_views = ops.shape(z)[0], z.shape[1]

    global_z, offset = gather_candidates(z)
    global_labels, _ = gather_candidates(labels)
    total = ops.shape(global_z)[0]
    # View-major order: view v of example i is row v * batch + i.
    anchors = ops.reshape(ops.transpose(z, (1, 0, 2)), (-1, z.shape[-1]))
    candidates = ops.reshape(ops.transpose(global_z, (1, 0, 2)), (-1, z.shape[-1]))
    anchor_labels = ops.tile(labels, (num_views,))
    candidate_labels = ops.tile(global_labels, (num_views,))

    inv_t = ops.cast(1.0 / temperature, z.dtype)
    views_index = ops.repeat(ops.arange(num_views), local)
    self_index = views_index * total + ops.tile(ops.arange(local), (num_views,)) + offset
    cross_entropy, num_positives = map_row_chunks(
        _cross_entropy_over_positives,
        (anchors * inv_t, anchor_labels, self_index, ops.tile(own, (num_views, 1, 1))),
        (candidates, candidate_labels),
        chunk_size,
    )
    factor = 1.0 if base_temperature is None else temperature / base_temperature
    valid = num_positives > 0
    losses = ops.where(valid, factor * cross_entropy, 0.0)
    num_anchors = global_sum(ops.cast(ops.shape(losses)[0], z.dtype))
    num_valid = global_sum(ops.sum(ops.cast(valid, z.dtype)))
    losses = losses * num_anchors / ops.maximum(num_valid, 1.0)
    losses = ops.transpose(ops.reshape(losses, (num_views, local)))
    return losses[:, 0] if single_view else losses


def _cross_entropy_over_positives(anchors, labels, self_index, own, candidates, candidate_labels):
    """Per anchor: the cross-entropy against its positives, and their number.

    The candidates but the anchor itself are in the normaliser, then the
    anchor's `own` `(n, H, D)` negatives.
    """
    logits = ops.matmul(anchors, ops.transpose(candidates))
    not_self = ops.arange(ops.shape(candidates)[0])[None, :] != self_index[:, None]
    positives = ops.logical_and(not_self, labels[:, None] == candidate_labels[None, :])
    num_positives = ops.sum(ops.cast(positives, logits.dtype), axis=-1)
    own_logits = ops.einsum("nd,nhd->nh", anchors, own)
    extra = ops.ones_like(own_logits, dtype="bool")
    return (
        multi_positive_cross_entropy(
            ops.concatenate([logits, own_logits], axis=-1),
            ops.concatenate([positives, ~extra], axis=-1),
            ops.concatenate([not_self, extra], axis=-1),
        ),
        num_positives,
    )


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SupConLoss(ContrastiveLoss):
    """Supervised contrastive loss: `y_true` `(B,)` int labels, `y_pred` `(B, [V,] D)`.

    Calling the loss returns the mean over the anchors that have a positive.

    State inputs: `y_pred` may also be a dict `{"embeddings": (B, [V,] D),
    "temperature": τ, "hard_negatives": (B, H, D)}` with either state entry:
    τ a scalar tensor or variable (which receives gradients), used for that
    call instead of the configured one, which is left unchanged; and H extra
    negatives of each example, for its anchors only (the mined negatives of
    `kc.callbacks.HardNegativeMiner`).

    Args:
        temperature: `τ > 0`. Default 0.1 (Khosla et al. 2020 use 0.1).
        base_temperature: `None` (factor 1) or `τ_base > 0` for the reference
            code's `τ/τ_base` factor.
        chunk_size: `None` (default, dense) or an int `>= 1`: score the
            anchors in blocks of that many rows, recomputed in the backward
            pass, for memory `O(B · chunk_size)` instead of `O(B²)`.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(8, 16)).astype("float32")
    >>> float(SupConLoss()(np.array([0, 1, 0, 1, 2, 2, 3, 3]), x)) > 0
    True

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """

    contract = LossContract(
        labels="integer", y_pred="views", state=("temperature", "hard_negatives")
    )

    def __init__(
        self,
        temperature=0.1,
        base_temperature=None,
        chunk_size=None,
        reduction="sum_over_batch_size",
        name="supcon_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        if base_temperature is not None:
            base_temperature = check_positive("base_temperature", base_temperature)
        self.base_temperature = base_temperature
        self.chunk_size = check_chunk_size(chunk_size)

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        temperature = state.get("temperature", self.temperature)
        return supcon_loss(
            y_true,
            y_pred,
            temperature,
            self.base_temperature,
            self.chunk_size,
            state.get("hard_negatives"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": float(self.temperature),
            "base_temperature": self.base_temperature,
            "chunk_size": self.chunk_size,
        }
