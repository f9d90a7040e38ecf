"""NT-Xent, the normalized temperature-scaled cross-entropy loss of SimCLR."""

import functools

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.losses._base import (
    ContrastiveLoss,
    LossContract,
    integer_labels,
    own_negatives,
    views,
)
from keras_contrastive.ops._validation import check_bool, check_positive
from keras_contrastive.ops.chunked import check_chunk_size, map_row_chunks
from keras_contrastive.ops.hard_negatives import check_hard_negatives, is_plain, softmax_rows
from keras_contrastive.ops.similarity import l2_normalize
from keras_contrastive.ops.softmax import masked_logsumexp


def ntxent_loss(
    y_true,
    y_pred,
    temperature=0.1,
    chunk_size=None,
    tau_plus=0.0,
    beta=0.0,
    decoupled=False,
    hard_negatives=None,
):
    """NT-Xent loss for each of the 2B anchors of B positive pairs.

    With the 2B normalized views and `s` the cosine similarity, the anchor `i`
    with positive `j` has loss
    `-log(exp(s_ij / τ) / Σ_{k≠i} exp(s_ik / τ))`. Under a distribution
    strategy the candidates `k` are the views of all replicas.

    Args:
        y_true: `None`, or `(B,)` integer group ids: the views of other pairs
            of the anchor's group (a duplicate image, an example of its
            class) are accidental hits, left out of its negatives (not
            positives: the positive stays the other view of its pair).
        y_pred: `(B, 2, D)` the two views' embeddings (normalized here).
        temperature: `τ > 0`; a float or a scalar tensor. Default 0.1, the
            SimCLR code default.
        chunk_size: `None` (default) builds the whole `(2B, 2B)` similarity
            matrix; an int `>= 1` scores the anchors in blocks of that many
            rows and recomputes each block for the gradient, so memory grows
            as `2B · chunk_size` (see `kc.ops.map_row_chunks`). Same values.
        tau_plus: `τ⁺` in `[0, 1)`, debiasing for the chance that a negative
            is of the anchor's class (Chuang et al. 2020). Default 0.
        beta: `β >= 0`, weight of hard negatives by `e^{β s/τ}` (Robinson et
            al. 2021). Default 0.
        decoupled: bool, the positive leaves the denominator (DCL, Yeh et al.
            2021). Default False. With `tau_plus=0, beta=0, decoupled=False`
            (the defaults) the loss is NT-Xent as above; otherwise it is
            `kc.ops.hard_negative_nll` over the 2B − 2 negatives of each anchor.
        hard_negatives: optional `(B, H, D)` extra negatives of each pair
            (mined, e.g. by `kc.callbacks.HardNegativeMiner`): both views of
            pair `k` are scored against its H, and no other anchor is.

    Returns:
        `(B, 2)` float32: entry `[k, v]` is the loss of view `v` of pair `k`
        as anchor. Their mean is the SimCLR loss
        `1/2N Σ_k [ℓ(2k-1, 2k) + ℓ(2k, 2k-1)]`.

    Example:

    >>> import numpy as np
    >>> views = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> ntxent_loss(None, views).shape
    TensorShape([8, 2])
    >>> mined = np.random.normal(size=(8, 3, 16)).astype("float32")
    >>> ntxent_loss(None, views, hard_negatives=mined).shape
    TensorShape([8, 2])

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of
    Visual Representations", ICML 2020.
    """
    check_positive("temperature", temperature)
    check_chunk_size(chunk_size)
    options = check_hard_negatives(tau_plus, beta, decoupled)
    z = l2_normalize(views(y_pred))
    a, b = z[:, 0], z[:, 1]
    inv_t = ops.cast(1.0 / temperature, z.dtype)
    global_a, offset = gather_candidates(a)
    global_b, _ = gather_candidates(b)
    anchors = ops.concatenate([a, b], axis=0) * inv_t
    candidates = ops.concatenate([global_a, global_b], axis=0)
    local, total = ops.shape(a)[0], ops.shape(global_a)[0]
    rows = ops.arange(local) + offset
    if is_plain(*options) and y_true is None and hard_negatives is None:
        self_index = ops.concatenate([rows, rows + total], axis=0)
        normaliser = map_row_chunks(
            _logsumexp_of_others, (anchors, self_index), (candidates,), chunk_size
        )
        positive = ops.sum(a * b, axis=-1) * inv_t
        losses = normaliser - ops.concatenate([positive, positive], 0)
        return ops.stack([losses[:local], losses[local:]], axis=1)
    # The positive of view a is view b of its pair, and back; a pair's id is its
    # index, or its group, whose other views are left out of the negatives.
    if y_true is None:
        ids, candidate_ids = rows, ops.arange(total)
    else:
        ids = integer_labels(y_true, z)
        candidate_ids, _ = gather_candidates(ids)
    own = own_negatives(hard_negatives, z)
    losses = map_row_chunks(
        functools.partial(softmax_rows, options, False),
        (
            anchors,
            ops.concatenate([rows + total, rows], axis=0),
            ops.concatenate([ids, ids], axis=0),
            ops.concatenate([own, own], axis=0),
        ),
        (
            candidates,
            ops.concatenate([candidate_ids, candidate_ids], axis=0),
            ops.zeros((0, z.shape[-1]), z.dtype),
            -inv_t,
        ),
        chunk_size,
    )
    return ops.stack([losses[:local], losses[local:]], axis=1)


def _logsumexp_of_others(anchors, self_index, candidates):
    """Per anchor: log Σ exp(anchor · candidate) over the candidates other than itself."""
    logits = ops.matmul(anchors, ops.transpose(candidates))
    not_self = ops.arange(ops.shape(candidates)[0])[None, :] != self_index[:, None]
    return masked_logsumexp(logits, not_self)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class NTXentLoss(ContrastiveLoss):
    """NT-Xent (SimCLR) loss over two views: `y_pred` is `(B, 2, D)`.

    Every view is an anchor whose positive is the other view of its pair and
    whose negatives are the other 2B - 2 views (of all replicas under a
    distribution strategy). `y_true` is ignored unless `use_group_ids`.
    Calling the loss returns the mean over the 2B anchors.

    State inputs: `y_pred` may also be a dict `{"embeddings": (B, 2, D),
    "temperature": τ, "hard_negatives": (B, H, D)}` with either state entry:
    a scalar tensor or variable τ (a model's learned temperature, which
    receives gradients), used for that call instead of the configured one;
    and H extra negatives of each pair, scored for its two views only (the
    mined negatives of `kc.callbacks.HardNegativeMiner`).

    Args:
        temperature: `τ > 0`. Default 0.1 (SimCLR code default).
        chunk_size: `None` (default, dense) or an int `>= 1`: score the
            anchors in blocks of that many rows, recomputed in the backward
            pass, for memory `O(B · chunk_size)` instead of `O(B²)`.
        tau_plus: `τ⁺` in `[0, 1)`, debiased negatives (Chuang et al.
            2020; their CIFAR-10 setting 0.1). Default 0.
        beta: `β >= 0`, hard-negative weighting (Robinson et al. 2021;
            β = 1 on STL-10). Default 0.
        decoupled: bool, the decoupled loss (DCL, Yeh et al. 2021). Default
            False. The defaults give NT-Xent exactly (see `kc.losses.ntxent_loss`).
        use_group_ids: if True, `y_true` holds `(B,)` integer group ids, and
            the views of other pairs of the anchor's group are accidental hits,
            left out of its negatives (CLIP's `use_group_ids`, for a dataset
            with duplicates or with class labels). Default False.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> loss = NTXentLoss(temperature=0.1)
    >>> views = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> float(loss(None, views)) > 0
    True

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of
    Visual Representations", ICML 2020.
    """

    def __init__(
        self,
        temperature=0.1,
        chunk_size=None,
        tau_plus=0.0,
        beta=0.0,
        decoupled=False,
        use_group_ids=False,
        reduction="sum_over_batch_size",
        name="ntxent_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        self.chunk_size = check_chunk_size(chunk_size)
        self.tau_plus, self.beta, self.decoupled = check_hard_negatives(tau_plus, beta, decoupled)
        self.use_group_ids = check_bool("use_group_ids", use_group_ids)

    @property
    def contract(self):
        return LossContract(
            labels="integer" if self.use_group_ids else "ignored",
            y_pred="pair",
            state=("temperature", "hard_negatives"),
        )

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        return ntxent_loss(
            y_true if self.use_group_ids else None,
            y_pred,
            state.get("temperature", self.temperature),
            self.chunk_size,
            self.tau_plus,
            self.beta,
            self.decoupled,
            state.get("hard_negatives"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": float(self.temperature),
            "chunk_size": self.chunk_size,
            "tau_plus": float(self.tau_plus),
            "beta": float(self.beta),
            "decoupled": self.decoupled,
            "use_group_ids": self.use_group_ids,
        }
