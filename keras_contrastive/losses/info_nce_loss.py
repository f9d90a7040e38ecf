"""InfoNCE: a query against its positive key, in-batch keys and extra negatives."""

import functools

import keras
import numpy as np
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.losses._base import (
    ContrastiveLoss,
    LossContract,
    embeddings,
    integer_labels,
    own_negatives,
    views,
)
from keras_contrastive.ops._validation import check_bool, check_dim, check_positive, check_rank
from keras_contrastive.ops.chunked import check_chunk_size, map_row_chunks
from keras_contrastive.ops.hard_negatives import check_hard_negatives, is_plain, softmax_rows
from keras_contrastive.ops.similarity import l2_normalize


def info_nce_loss(
    y_true,
    y_pred,
    temperature=0.07,
    negative_keys=None,
    chunk_size=None,
    tau_plus=0.0,
    beta=0.0,
    decoupled=False,
    hard_negatives=None,
):
    """InfoNCE loss for each of B queries.

    Query `q_i` has loss
    `-log(e^{s(q_i,k_i)/τ} / (Σ_j e^{s(q_i,k_j)/τ} + Σ_m e^{s(q_i,n_m)/τ}))`
    over the in-batch keys `k_j` (of all replicas under a distribution
    strategy) and the optional extra negatives `n_m` (e.g. a MoCo queue).

    Args:
        y_true: `None`, or `(B,)` integer group ids: the keys of other pairs
            of the query's group are accidental hits, left out of its
            negatives (the positive stays its own key). The queue's keys carry
            no ids and are always negatives.
        y_pred: `(B, 2, D)` (query, positive key) pairs.
        temperature: `τ > 0`, float or scalar tensor. Default 0.07 (MoCo,
            CPC's InfoNCE as used by He et al. 2020).
        negative_keys: optional `(M, D)` extra negative keys.
        chunk_size: `None` (default) builds the whole `(B, B + M)` logits; an
            int `>= 1` scores the queries in blocks of that many rows and
            recomputes each block for the gradient (`kc.ops.map_row_chunks`),
            so memory grows as `(B + M) · chunk_size`. Same values.
        tau_plus, beta, decoupled: debiased negatives (`τ⁺` in `[0, 1)`,
            Chuang et al. 2020), hard-negative weighting (`β >= 0`, Robinson
            et al. 2021) and the decoupled loss (DCL, Yeh et al. 2021), over
            the `B − 1 + M` negatives of each query (see
            `kc.ops.hard_negative_nll`). The defaults (0, 0, False) give
            InfoNCE as above.
        hard_negatives: optional `(B, H, D)` extra negative keys of each query
            (mined, e.g. by `kc.callbacks.HardNegativeMiner`), scored for that
            query only, unlike the queue's, which every query shares.

    Returns:
        `(B,)` float32 per-query losses.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> queue = np.random.normal(size=(32, 16)).astype("float32")
    >>> info_nce_loss(None, pairs, negative_keys=queue).shape
    TensorShape([8])

    References: van den Oord et al., "Representation Learning with Contrastive
    Predictive Coding", 2018; He et al., "Momentum Contrast for Unsupervised
    Visual Representation Learning", CVPR 2020.
    """
    check_positive("temperature", temperature)
    check_chunk_size(chunk_size)
    options = check_hard_negatives(tau_plus, beta, decoupled)
    z = l2_normalize(views(y_pred, layout="(B, 2, D) (query, key)"))
    queries, keys = z[:, 0], z[:, 1]
    inv_t = ops.cast(1.0 / temperature, z.dtype)
    candidates, offset = gather_candidates(keys)
    queue = ops.zeros((0, z.shape[-1]), z.dtype)
    if negative_keys is not None:
        queue = ops.convert_to_tensor(negative_keys)
        check_rank("negative_keys", queue, (2,), "(M, D)")
        check_dim("negative_keys", queue, 1, z.shape[-1], "(M, D)")
        queue = l2_normalize(ops.cast(embeddings(queue, "negative_keys", min_batch=0), z.dtype))
    if is_plain(*options) and y_true is None and hard_negatives is None:
        normaliser = map_row_chunks(
            _row_logsumexp,
            (queries * inv_t,),
            (ops.concatenate([candidates, queue], axis=0),),
            chunk_size,
        )
        return normaliser - ops.sum(queries * keys, axis=-1) * inv_t
    # The positive of query i is key offset + i; the keys of its group are left
    # out of its negatives; the queue's keys and its own are negatives.
    positive_index = ops.arange(ops.shape(queries)[0]) + offset
    if y_true is None:
        ids, candidate_ids = positive_index, ops.arange(ops.shape(candidates)[0])
    else:
        ids = integer_labels(y_true, z)
        candidate_ids, _ = gather_candidates(ids)
    return map_row_chunks(
        functools.partial(softmax_rows, options, False),
        (queries * inv_t, positive_index, ids, own_negatives(hard_negatives, z)),
        (candidates, candidate_ids, queue, -inv_t),
        chunk_size,
    )


def _row_logsumexp(anchors, candidates):
    """Per anchor: log Σ exp(anchor · candidate) over all candidates."""
    return ops.logsumexp(ops.matmul(anchors, ops.transpose(candidates)), axis=-1)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class InfoNCELoss(ContrastiveLoss):
    """InfoNCE loss over (query, positive key) pairs: `y_pred` is `(B, 2, D)`.

    The other in-batch keys, and `negative_keys` when given, are the negatives.
    `y_true` is ignored unless `use_group_ids`. Calling the loss returns the
    mean over queries.

    State inputs: `y_pred` may also be a dict `{"embeddings": (B, 2, D),
    "temperature": τ, "negative_keys": (M, D), "hard_negatives": (B, H, D)}`
    with any of the state entries: a scalar tensor or variable τ (which
    receives gradients); extra negatives every query shares, such as a MoCo
    queue, which replace the configured `negative_keys`; and H negatives of
    each query, scored for it alone (the mined negatives of
    `kc.callbacks.HardNegativeMiner`). The given values are used for that call
    only; the configured ones are left unchanged.

    Args:
        temperature: `τ > 0`. Default 0.07 (MoCo).
        negative_keys: optional fixed `(M, D)` extra negatives, saved in the
            config.
        chunk_size: `None` (default, dense) or an int `>= 1`: score the
            queries in blocks of that many rows, recomputed in the backward
            pass, for memory `O(B · chunk_size)` instead of `O(B²)`.
        tau_plus: `τ⁺` in `[0, 1)`, debiased negatives (Chuang et al. 2020).
            Default 0.
        beta: `β >= 0`, hard-negative weighting (Robinson et al. 2021).
            Default 0.
        decoupled: bool, the decoupled loss (DCL, Yeh et al. 2021). Default
            False. The three apply to the in-batch and the queue's negatives
            alike (see `kc.losses.info_nce_loss`).
        use_group_ids: if True, `y_true` holds `(B,)` integer group ids, and
            the keys of other pairs of the query's group are accidental hits,
            left out of its negatives. Default False.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> float(InfoNCELoss()(None, pairs)) > 0
    True

    Reference: van den Oord et al., "Representation Learning with Contrastive
    Predictive Coding", 2018.
    """

    def __init__(
        self,
        temperature=0.07,
        negative_keys=None,
        chunk_size=None,
        tau_plus=0.0,
        beta=0.0,
        decoupled=False,
        use_group_ids=False,
        reduction="sum_over_batch_size",
        name="info_nce_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        self.negative_keys = None if negative_keys is None else np.asarray(negative_keys, "float32")
        self.chunk_size = check_chunk_size(chunk_size)
        self.tau_plus, self.beta, self.decoupled = check_hard_negatives(tau_plus, beta, decoupled)
        self.use_group_ids = check_bool("use_group_ids", use_group_ids)

    @property
    def contract(self):
        return LossContract(
            labels="integer" if self.use_group_ids else "ignored",
            y_pred="pair",
            state=("temperature", "negative_keys", "hard_negatives"),
        )

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        return info_nce_loss(
            y_true if self.use_group_ids else None,
            y_pred,
            state.get("temperature", self.temperature),
            state.get("negative_keys", self.negative_keys),
            self.chunk_size,
            self.tau_plus,
            self.beta,
            self.decoupled,
            state.get("hard_negatives"),
        )

    def get_config(self):
        keys = None if self.negative_keys is None else self.negative_keys.tolist()
        return {
            **super().get_config(),
            "temperature": float(self.temperature),
            "negative_keys": keys,
            "chunk_size": self.chunk_size,
            "tau_plus": float(self.tau_plus),
            "beta": float(self.beta),
            "decoupled": self.decoupled,
            "use_group_ids": self.use_group_ids,
        }
