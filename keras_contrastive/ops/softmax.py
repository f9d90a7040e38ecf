"""Numerically stable masked log-softmax and log-sum-exp."""

from keras import ops

MASK_VALUE = -1e9
"""Logit given to masked-out entries: large and finite, so that a row whose
entries are all masked still gives finite values (never `-inf - -inf = NaN`)."""


def masked_logits(logits, mask):
    """`logits` where `mask` is True, `MASK_VALUE` elsewhere.

    Args:
        logits: float tensor.
        mask: bool tensor broadcastable to `logits`, the entries to keep.

    Returns:
        A tensor of the shape and dtype of `logits`.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> logits = np.array([[1.0, 2.0, 3.0]], "float32")
    >>> kc.ops.masked_logits(logits, np.array([[True, True, False]]))  # [[1.0, 2.0, -1e9]]
    """
    return ops.where(mask, logits, ops.cast(MASK_VALUE, logits.dtype))


def masked_logsumexp(logits, mask, axis=-1):
    """`log(sum(exp(logits)))` over the entries where `mask` is True.

    Stable for any finite logits (the row maximum is subtracted first).

    Args:
        logits: float tensor.
        mask: bool tensor broadcastable to `logits`, the entries to sum over.
        axis: int, the axis to reduce. Defaults to `-1`.

    Returns:
        `logits` with `axis` reduced; about `MASK_VALUE` where a row is all masked.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> logits = np.array([[1.0, 2.0, 3.0]], "float32")
    >>> kc.ops.masked_logsumexp(logits, np.array([[True, True, False]]))  # [2.313]
    """
    return ops.logsumexp(masked_logits(logits, mask), axis=axis)


def masked_log_softmax(logits, mask, axis=-1):
    """Log-softmax over the entries where `mask` is True.

    Masked entries get `MASK_VALUE` minus the log normaliser: large negative
    and finite, so multiplying them by a zero weight gives 0, not NaN.

    Example:

    >>> import keras_contrastive as kc
    >>> kc.ops.masked_log_softmax([[0.0, 0.0, 5.0]], [[True, True, False]])
    ... # [[-0.693, -0.693, -1e9]]
    """
    logits = masked_logits(ops.convert_to_tensor(logits), mask)
    return logits - ops.logsumexp(logits, axis=axis, keepdims=True)


def multi_positive_cross_entropy(logits, positives, candidates=None):
    """Cross-entropy of each row against a uniform target over its `positives`.

    `logsumexp(logits over candidates) - mean(logits over positives)`, which
    is `-mean_{p} log softmax(logits)[p]` without materialising the
    log-softmax. Rows without a positive give `logsumexp` (mask them out).

    Args:
        logits: `(N, M)` float logits.
        positives: `(N, M)` bool, the positives of each row.
        candidates: optional `(N, M)` bool, the entries in the normaliser
            (all when omitted). Defaults to `None`.

    Returns:
        `(N,)` float, the cross-entropy of each row.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> logits = np.zeros((2, 4), "float32")
    >>> kc.ops.multi_positive_cross_entropy(logits, np.eye(2, 4, dtype=bool))  # [1.386, 1.386]
    """
    if candidates is None:
        normaliser = ops.logsumexp(logits, axis=-1)
    else:
        normaliser = masked_logsumexp(logits, candidates)
    num_positives = ops.sum(ops.cast(positives, logits.dtype), axis=-1)
    positive_sum = ops.sum(ops.where(positives, logits, 0.0), axis=-1)
    return normaliser - positive_sum / ops.maximum(num_positives, 1.0)
