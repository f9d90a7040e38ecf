"""Pairwise sigmoid image–text loss of SigLIP."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.losses._base import ContrastiveLoss, LossContract, integer_labels, views
from keras_contrastive.ops._validation import check_bool, check_number, check_positive
from keras_contrastive.ops.chunked import check_chunk_size, map_row_chunks
from keras_contrastive.ops.similarity import l2_normalize


def siglip_loss(y_true, y_pred, temperature=0.1, bias=-10.0, chunk_size=None):
    """Pairwise sigmoid loss of each image against every text of the batch.

    With normalized embeddings, scale `t = 1/τ` and bias `b`, image `i` has
    loss `Σ_j −log σ(z_ij · (t · x_i·y_j + b))` over all B texts `j`, where
    `z_ij = +1` for a matching pair (`j = i`, or the same group id) and `−1`
    otherwise. The mean over images is SigLIP's loss: the sum over all B²
    pairs divided by B. Every pair is an independent binary decision, so no
    softmax normaliser is shared across the batch. Under a distribution
    strategy each replica scores its images against the texts of all replicas.

    Args:
        y_true: `None`, or `(B,)` integer group ids (same id = matching pair).
        y_pred: `(B, 2, D)` (image, text) embedding pairs.
        temperature: `τ = 1/t > 0`: a float, or a scalar tensor or variable
            for a learned temperature (e.g. `SigmoidLogitScale.temperature`).
            Default 0.1 (SigLIP's initial `t = exp(log 10) = 10`).
        bias: `b`, a finite float or a scalar tensor or variable for a
            learned bias (e.g. `SigmoidLogitScale.bias`). Default −10
            (SigLIP's initial bias, which keeps the B² − B negative pairs from
            dominating the first steps).
        chunk_size: `None` (default) builds the whole `(B, B)` logits; an int
            `>= 1` scores the images in blocks of that many rows and
            recomputes each block for the gradient (`kc.ops.map_row_chunks`),
            so memory grows as `B · chunk_size`. Same values.

    Returns:
        `(B,)` float32 per-image losses.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> siglip_loss(None, pairs).shape
    TensorShape([8])

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training",
    ICCV 2023 (Algorithm 1; initial `t' = log 10`, `b = −10`).
    """
    check_positive("temperature", temperature)
    _check_bias(bias)
    check_chunk_size(chunk_size)
    z = l2_normalize(views(y_pred, layout="(B, 2, D) (image, text)"))
    ids = None if y_true is None else integer_labels(y_true, z)
    images, texts = z[:, 0] * ops.cast(1.0 / temperature, z.dtype), z[:, 1]
    global_texts, offset = gather_candidates(texts)
    if ids is None:  # the match of image i is the global text offset + i
        ids = ops.arange(ops.shape(texts)[0]) + offset
        global_ids = ops.arange(ops.shape(global_texts)[0])
    else:
        global_ids, _ = gather_candidates(ids)
    return map_row_chunks(
        _sigmoid_losses_of_rows,
        (images, ids),
        (global_texts, global_ids, ops.cast(bias, z.dtype)),
        chunk_size,
    )


def _sigmoid_losses_of_rows(images, ids, texts, text_ids, bias):
    """Per image: `Σ_j softplus(−z_ij · logit_ij)`, which is `−Σ_j log σ(z_ij · logit_ij)`."""
    logits = ops.matmul(images, ops.transpose(texts)) + bias
    signs = ops.where(ids[:, None] == text_ids[None, :], 1.0, -1.0)
    return ops.sum(ops.softplus(-ops.cast(signs, logits.dtype) * logits), axis=-1)


def _check_bias(bias):
    return check_number("bias", bias, allow_variable=True)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SigLIPLoss(ContrastiveLoss):
    """SigLIP's pairwise sigmoid loss over (image, text) pairs: `y_pred` is `(B, 2, D)`.

    Calling the loss returns the mean over images, i.e. the sum over all
    image–text pairs divided by B, as in the paper.

    State inputs: `y_pred` may also be a dict `{"embeddings": (B, 2, D),
    "temperature": τ, "bias": b}` with either or both state entries, each a
    scalar tensor or variable (e.g. those of `kc.layers.SigmoidLogitScale`,
    which receive gradients). The given values are used for that call instead
    of the configured ones, which are left unchanged.

    Args:
        temperature: `τ = 1/t > 0`, float or scalar tensor/variable. Default
            0.1 (SigLIP's initial `t = 10`).
        bias: `b`, float or scalar tensor/variable. Default −10 (SigLIP).
        use_group_ids: if True, `y_true` holds `(B,)` integer group ids and
            every pair within a group is a match; if False (default), `y_true`
            is ignored and the match of image `i` is text `i`.
        chunk_size: `None` (default, dense) or an int `>= 1`: score the
            images in blocks of that many rows, recomputed in the backward
            pass, for memory `O(B · chunk_size)` instead of `O(B²)`.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> float(SigLIPLoss()(None, pairs)) > 0
    True

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training",
    ICCV 2023.
    """

    def __init__(
        self,
        temperature=0.1,
        bias=-10.0,
        use_group_ids=False,
        chunk_size=None,
        reduction="sum_over_batch_size",
        name="siglip_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        self.bias = _check_bias(bias)
        self.use_group_ids = check_bool("use_group_ids", use_group_ids)
        self.chunk_size = check_chunk_size(chunk_size)

    @property
    def contract(self):
        labels = "integer" if self.use_group_ids else "ignored"
        return LossContract(labels=labels, y_pred="pair", state=("temperature", "bias"))

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        group_ids = y_true if self.use_group_ids else None
        return siglip_loss(
            group_ids,
            y_pred,
            state.get("temperature", self.temperature),
            state.get("bias", self.bias),
            self.chunk_size,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": float(self.temperature),
            "bias": float(self.bias),
            "use_group_ids": self.use_group_ids,
            "chunk_size": self.chunk_size,
        }
