"""Normalization, similarity and distance matrices."""

from keras import ops

from keras_contrastive.ops._validation import check_choice

DISTANCES = ("euclidean", "squared_euclidean", "cosine")


def compute_dtype(x):
    """The dtype to compute a loss in: float32, or float64 if `x` is float64.

    Half-precision inputs (`mixed_float16`, `mixed_bfloat16`) are upcast so that
    logits and log-sum-exp never run in 16 bits.
    """
    return "float64" if ops.convert_to_tensor(x).dtype == "float64" else "float32"


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """Scales `x` to unit L2 norm along `axis`, overflow-safe.

    Each vector is first divided by its largest absolute entry, so entries up
    to the float maximum neither overflow nor underflow when squared. A zero
    vector stays zero.

    Example:

    >>> import keras_contrastive as kc
    >>> kc.ops.l2_normalize([[3.0, 4.0]])  # [[0.6, 0.8]]
    """
    x = ops.convert_to_tensor(x)
    scale = ops.max(ops.abs(x), axis=axis, keepdims=True)
    x = x / ops.where(scale > 0, scale, 1.0)
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, epsilon))


def cosine_similarity(a, b=None):
    """The `(N, M)` matrix of cosine similarities between rows of `a` and `b`.

    Args:
        a: `(N, D)` embeddings.
        b: `(M, D)` embeddings; `a` itself when omitted. Defaults to `None`.

    Returns:
        `(N, M)` similarities in [-1, 1]; rows are L2-normalized first.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> a = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> kc.ops.cosine_similarity(a, np.array([[1.0, 1.0], [0.0, -1.0], [3.0, 0.0]]))
    ... # (2, 3): [[0.707, 0.0, 1.0], [0.707, -1.0, 0.0]]
    """
    a = l2_normalize(a)
    b = a if b is None else l2_normalize(b)
    return ops.matmul(a, ops.transpose(b))


def pairwise_distance(a, b=None, distance="euclidean"):
    """The `(N, M)` matrix of distances between rows of `a` and `b`.

    Args:
        a: `(N, D)` embeddings.
        b: `(M, D)` embeddings; `a` itself when omitted, in which case the
            diagonal is exactly zero. Defaults to `None`.
        distance: `"euclidean"`, `"squared_euclidean"` or `"cosine"`
            (`1 - cosine similarity`). Defaults to `"euclidean"`.

    Returns:
        `(N, M)` non-negative distances.

    The euclidean distance has a zero gradient where two points coincide
    (instead of the `inf` of `sqrt` at 0).

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> kc.ops.pairwise_distance(x)  # (3, 3): [[0, 5, 10], [5, 0, 5], [10, 5, 0]]
    >>> kc.ops.pairwise_distance(x[:1], x, distance="squared_euclidean")  # [[0, 25, 100]]
    """
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        return 1.0 - cosine_similarity(a, b)
    self_distance = b is None
    b = a if b is None else b
    sq_a = ops.sum(ops.square(a), axis=-1, keepdims=True)
    sq_b = ops.sum(ops.square(b), axis=-1, keepdims=True)
    sq = sq_a - 2.0 * ops.matmul(a, ops.transpose(b)) + ops.transpose(sq_b)
    sq = ops.maximum(sq, 0.0)
    if self_distance:
        sq = sq * (1.0 - ops.eye(ops.shape(a)[0], dtype=sq.dtype))
    if distance == "squared_euclidean":
        return sq
    return safe_sqrt(sq)


def safe_sqrt(x, epsilon=1e-16):
    """`sqrt(x)` for `x >= 0` whose gradient is 0, not `inf`, where `x` is ~0.

    Args:
        x: non-negative float tensor.
        epsilon: float, entries at or below it give 0. Defaults to `1e-16`.

    Returns:
        `sqrt(x)`, of the shape of `x`.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> kc.ops.safe_sqrt(np.array([0.0, 4.0]))  # [0.0, 2.0], gradient [0.0, 0.25]
    """
    positive = x > epsilon
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)


def paired_distance(a, b, distance="euclidean"):
    """The `(N,)` distances between matching rows of `a` and `b`.

    Args:
        a: `(N, D)` embeddings.
        b: `(N, D)` embeddings.
        distance: `"euclidean"`, `"squared_euclidean"` or `"cosine"`
            (`1 - cosine similarity`). Defaults to `"euclidean"`.

    Returns:
        `(N,)` non-negative distances, `d(a[i], b[i])`.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> kc.ops.paired_distance(a, np.array([[3.0, 4.0], [2.0, 0.0]]))  # [5.0, 1.0]
    """
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        return 1.0 - ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
    sq = ops.sum(ops.square(a - b), axis=-1)
    return sq if distance == "squared_euclidean" else safe_sqrt(sq)
