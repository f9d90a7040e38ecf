"""Symmetric image–text contrastive loss of CLIP."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates, replica_context
from keras_contrastive.losses._base import ContrastiveLoss, integer_labels, views
from keras_contrastive.ops._validation import check_positive
from keras_contrastive.ops.similarity import l2_normalize
from keras_contrastive.ops.softmax import multi_positive_cross_entropy


def clip_loss(y_true, y_pred, temperature=0.07):
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

    Returns:
        `(B,)` float32 per-pair losses.

    Example:

    >>> import numpy as np
    >>> pairs = np.random.normal(size=(8, 2, 16)).astype("float32")
    >>> clip_loss(None, pairs).shape
    TensorShape([8])

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021.
    """
    check_positive("temperature", temperature)
    z = l2_normalize(views(y_pred, layout="(B, 2, D) (image, text)"))
    images, texts = z[:, 0], z[:, 1]
    scale = ops.cast(1.0 / temperature, z.dtype)
    global_images, offset = gather_candidates(images)
    global_texts, _ = gather_candidates(texts)
    image_to_text = ops.matmul(images * scale, ops.transpose(global_texts))
    if replica_context() is None:  # one matrix serves both directions
        text_to_image = ops.transpose(image_to_text)
    else:
        text_to_image = ops.matmul(texts * scale, ops.transpose(global_images))
    if y_true is None:  # the positive of pair i is its own diagonal entry
        positive = ops.sum(images * texts, axis=-1) * scale
        return (
            0.5 * (ops.logsumexp(image_to_text, axis=-1) + ops.logsumexp(text_to_image, axis=-1))
            - positive
        )
    ids = integer_labels(y_true, z)
    global_ids, _ = gather_candidates(ids)
    positives = ids[:, None] == global_ids[None, :]
    return 0.5 * (
        multi_positive_cross_entropy(image_to_text, positives)
        + multi_positive_cross_entropy(text_to_image, positives)
    )


@keras.saving.register_keras_serializable(package="keras_contrastive")
class CLIPLoss(ContrastiveLoss):
    """Symmetric CLIP loss over (image, text) pairs: `y_pred` is `(B, 2, D)`.

    Calling the loss returns the mean over pairs.

    Args:
        temperature: `τ > 0`, float or scalar tensor/variable. Default 0.07
            (CLIP's initial temperature). A `ContrastiveModel` with
            `logit_scale="learnable"` passes its learned temperature instead.
        use_group_ids: if True, `y_true` holds `(B,)` integer group ids and
            texts of the same group are all positives; if False (default),
            `y_true` is ignored and the positive of image `i` is text `i`.
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
        reduction="sum_over_batch_size",
        name="clip_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_positive("temperature", temperature)
        self.use_group_ids = bool(use_group_ids)
        self.labels = "integer" if self.use_group_ids else "ignored"

    def call(self, y_true, y_pred):
        group_ids = y_true if self.use_group_ids else None
        return clip_loss(group_ids, y_pred, temperature=self.temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": float(self.temperature),
            "use_group_ids": self.use_group_ids,
        }
