"""Symmetric image–text contrastive loss of CLIP."""

import functools

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates, replica_context
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
from keras_contrastive.ops.softmax import multi_positive_cross_entropy


def clip_loss(
    y_true,
    y_pred,
    temperature=0.07,
    chunk_size=None,
    tau_plus=0.0,
    beta=0.0,
    decoupled=False,
    hard_negatives=None,
):
    """Symmetric CLIP loss for each of B (image, text) pairs.

    `logits = I·Tᵀ / τ` over normalized embeddings; the value of pair `i` is
    `(CE(logits[i], positives) + CE(logitsᵀ[i], positives)) / 2`. By default
    the positive of image `i` is text `i`. With group ids, every text of the
    same group is a positive (several captions per image), and the target is
    uniform over them. Under a distribution strategy the candidates are the
    embeddings of all replicas.

    Args:
        y_true: `None`, or `(B,)` integer group ids (same id = same image).
        y_pred: `(B, 2, D)` (image, text) embedding pairs.
        temperature: `τ > 0`: a float, or a scalar tensor or variable for a
            learned temperature (e.g. `1 / LogitScale.scale`). Default 0.07.
        chunk_size: `None` (default) builds the whole `(B, B)` logits; an int
            `>= 1` scores images (then texts) in blocks of that many rows and
            recomputes each block for the gradient (`kc.ops.map_row_chunks`),
            so memory grows as `B · chunk_size`. Same values.
        tau_plus, beta, decoupled: debiased negatives (`τ⁺` in `[0, 1)`,
            Chuang et al. 2020), hard-negative weighting (`β >= 0`, Robinson
            et al. 2021) and the decoupled loss (DCL, Yeh et al. 2021), in both
            directions (see `kc.ops.hard_negative_nll`). The negatives of an
            image are the texts of other groups; with group ids, every text of
            its group is a positive, scored against the negatives alone (never
            against the group's other texts), and the row's value is the mean
            over them. The defaults (0, 0, False) give the CLIP loss as above.
        hard_negatives: optional `(B, H, D)` extra negative texts of each
            image (mined, e.g. by `kc.callbacks.HardNegativeMiner`), in the
            image-to-text direction: image `i` is scored against its H as well
            as the batch's texts, and no other image is (NegCLIP's hard
            negative captions, Yuksekgonul et al. 2023).

    Returns:
        `(B,)` float32 per-pair losses.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> clip_loss(None, pairs).shape
    TensorShape([8])
    >>> mined_texts = np.random.normal(size=(8, 3, 16)).astype("float32")
    >>> clip_loss(None, pairs, hard_negatives=mined_texts).shape
    TensorShape([8])

    References:
        - Radford et al., "Learning Transferable Visual Models From Natural
          Language Supervision", ICML 2021.
        - Yuksekgonul et al., "When and Why Vision-Language Models Behave
          Like Bags-of-Words, and What to Do About It?", ICLR 2023.
    """
    check_positive("temperature", temperature)
    check_chunk_size(chunk_size)
    options = check_hard_negatives(tau_plus, beta, decoupled)
    plain = is_plain(*options)
    z = l2_normalize(views(y_pred, layout="(B, 2, D) (image, text)"))
    ids = None if y_true is None else integer_labels(y_true, z)
    scale = ops.cast(1.0 / temperature, z.dtype)
    images, texts = z[:, 0] * scale, z[:, 1]
    own = own_negatives(hard_negatives, z)
    if plain and chunk_size is None and replica_context() is None and hard_negatives is None:
        return _one_matrix_loss(images, texts, ids)
    global_images, offset = gather_candidates(z[:, 0])
    global_texts, _ = gather_candidates(texts)
    if ids is None:  # the positive of pair i is the global pair offset + i
        ids = ops.arange(ops.shape(texts)[0]) + offset
        global_ids = ops.arange(ops.shape(global_texts)[0])
    else:
        global_ids, _ = gather_candidates(ids)
    rows = functools.partial(softmax_rows, options, plain)
    by_ids = -ops.ones_like(ids)  # each anchor's positives: the candidates of its id
    no_queue = ops.zeros((0, z.shape[-1]), z.dtype)
    image_to_text = map_row_chunks(
        rows, (images, by_ids, ids, own), (global_texts, global_ids, no_queue, -scale), chunk_size
    )
    text_to_image = map_row_chunks(
        rows,
        (texts * scale, by_ids, ids, own[:, :0]),
        (global_images, global_ids, no_queue, -scale),
        chunk_size,
    )
    return 0.5 * (image_to_text + text_to_image)


def _one_matrix_loss(images, texts, ids):
    """One device, dense: the `(B, B)` logits serve both directions."""
    logits = ops.matmul(images, ops.transpose(texts))
    if ids is None:  # the positive of pair i is its own diagonal entry
        positive = ops.sum(images * texts, axis=-1)
        return 0.5 * (ops.logsumexp(logits, axis=-1) + ops.logsumexp(logits, axis=0)) - positive
    positives = ids[:, None] == ids[None, :]
    return 0.5 * (
        multi_positive_cross_entropy(logits, positives)
        + multi_positive_cross_entropy(ops.transpose(logits), positives)
    )


@keras.saving.register_keras_serializable(package="keras_contrastive")
class CLIPLoss(ContrastiveLoss):
    """Symmetric CLIP loss over (image, text) pairs: `y_pred` is `(B, 2, D)`.

    Calling the loss returns the mean over pairs.

    State inputs: `y_pred` may also be a dict `{"embeddings": (B, 2, D),
    "temperature": τ, "hard_negatives": (B, H, D)}` with either state entry:
    τ a scalar tensor or variable (e.g. a model's learned
    `kc.layers.LogitScale.temperature`, which receives gradients), used for
    that call instead of the configured one, which is left unchanged; and H
    extra negative texts of each image, scored for that image only (the mined
    negatives of `kc.callbacks.HardNegativeMiner`).

    Args:
        temperature: `τ > 0`, float or scalar tensor/variable. Default 0.07
            (CLIP's initial temperature).
        chunk_size: `None` (default, dense) or an int `>= 1`: score the
            pairs in blocks of that many rows, recomputed in the backward
            pass, for memory `O(B · chunk_size)` instead of `O(B²)`.
        use_group_ids: if True, `y_true` holds `(B,)` integer group ids and
            texts of the same group are all positives; if False (default),
            `y_true` is ignored and the positive of image `i` is text `i`.
        tau_plus: `τ⁺` in `[0, 1)`, debiased negatives (Chuang et al. 2020).
            Default 0.
        beta: `β >= 0`, hard-negative weighting (Robinson et al. 2021).
            Default 0.
        decoupled: bool, the decoupled loss (DCL, Yeh et al. 2021). Default
            False. See `kc.losses.clip_loss`.
        reduction, name, dtype: as `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> float(CLIPLoss()(None, pairs)) > 0
    True

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021.
    """

    def __init__(
        self,
        temperature=0.07,
        use_group_ids=False,
        chunk_size=None,
        tau_plus=0.0,
        beta=0.0,
        decoupled=False,
        reduction="sum_over_batch_size",
        name="clip_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        self.use_group_ids = check_bool("use_group_ids", use_group_ids)
        self.chunk_size = check_chunk_size(chunk_size)
        self.tau_plus, self.beta, self.decoupled = check_hard_negatives(tau_plus, beta, decoupled)

    @property
    def contract(self):
        labels = "integer" if self.use_group_ids else "ignored"
        return LossContract(labels=labels, y_pred="pair", state=("temperature", "hard_negatives"))

    def call(self, y_true, y_pred):
        y_pred, state = self._split_state(y_pred)
        group_ids = y_true if self.use_group_ids else None
        temperature = state.get("temperature", self.temperature)
        return clip_loss(
            group_ids,
            y_pred,
            temperature,
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
            "use_group_ids": self.use_group_ids,
            "chunk_size": self.chunk_size,
            "tau_plus": float(self.tau_plus),
            "beta": float(self.beta),
            "decoupled": self.decoupled,
        }
