"""Boolean masks over pairs of examples."""

from keras import ops


def label_mask(labels_a, labels_b=None):
    """The `(N, M)` boolean matrix `labels_a[i] == labels_b[j]`.

    Args:
        labels_a: `(N,)` integer labels.
        labels_b: `(M,)` integer labels; `labels_a` when omitted. Defaults to
            `None`.

    Returns:
        `(N, M)` bool, `True` where the labels match.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> kc.ops.label_mask(np.array([0, 0, 1, 1]))  # (4, 4)
    >>> kc.ops.label_mask(np.array([0, 1, 2]), np.array([1, 2]))  # (3, 2)
    """
    labels_a = ops.reshape(labels_a, (-1, 1))
    labels_b = labels_a if labels_b is None else ops.reshape(labels_b, (-1, 1))
    return ops.equal(labels_a, ops.transpose(labels_b))


def off_diagonal_mask(n, m=None):
    """The `(n, m)` boolean matrix that is `False` on the diagonal, else `True`.

    Args:
        n: int, the number of rows.
        m: int, the number of columns; `n` when omitted. Defaults to `None`.

    Returns:
        `(n, m)` bool, `False` exactly where the row index equals the column index.

    Example:

    >>> import keras_contrastive as kc
    >>> kc.ops.off_diagonal_mask(3)  # (3, 3), False on the diagonal
    >>> kc.ops.off_diagonal_mask(2, 3)  # [[False, True, True], [True, False, True]]
    """
    return ops.logical_not(ops.cast(ops.eye(n, m), "bool"))


def positive_mask(labels):
    """Same-label pairs other than an example with itself: `(N, N)` bool.

    Args:
        labels: `(N,)` integer labels.

    Returns:
        `(N, N)` bool, `True` where `i != j` and `labels[i] == labels[j]`.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> kc.ops.positive_mask(np.array([0, 0, 1]))
    ... # (3, 3): [[False, True, False], [True, False, False], [False, False, False]]
    """
    return ops.logical_and(label_mask(labels), off_diagonal_mask(ops.shape(labels)[0]))
