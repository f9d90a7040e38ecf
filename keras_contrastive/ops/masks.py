"""Boolean masks over pairs of examples."""

from keras import ops


def label_mask(labels_a, labels_b=None):
    """The `(N, M)` boolean matrix `labels_a[i] == labels_b[j]`.

    Args:
        labels_a: `(N,)` integer labels.
        labels_b: `(M,)` integer labels; `labels_a` when omitted.
    """
    labels_a = ops.reshape(labels_a, (-1, 1))
    labels_b = labels_a if labels_b is None else ops.reshape(labels_b, (-1, 1))
    return ops.equal(labels_a, ops.transpose(labels_b))


def off_diagonal_mask(n, m=None):
    """The `(n, m)` boolean matrix that is `False` on the diagonal, else `True`."""
    return ops.logical_not(ops.cast(ops.eye(n, m), "bool"))


def positive_mask(labels):
    """Same-label pairs other than an example with itself: `(N, N)` bool."""
    return ops.logical_and(label_mask(labels), off_diagonal_mask(ops.shape(labels)[0]))
