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
    scale = ops.max(ops.abs(x), axis=axis, keepdims=True, initial=0.0)  # 0 for an empty x
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


def power_of_two_scale(*tensors):
    """The exponent `k` with `2**k <= max |entry| < 2**(k + 1)`, as a float tensor.

    `0` for all-zero input; no gradient flows through it. Dividing by `2**k`
    (with `times_power_of_two(x, -k)`) is exact and brings the largest entry
    into `[1, 2)`, so squares neither overflow nor underflow.
    """
    top = ops.max(ops.stack([ops.max(ops.abs(t)) for t in tensors]))
    return ops.stop_gradient(ops.floor(ops.log2(ops.where(top > 0, top, 1.0))))


def times_power_of_two(x, k):
    """`x * 2**k` for a float `k`, as two half-size factors so `2**k` itself never overflows."""
    x = ops.convert_to_tensor(x)
    k = ops.cast(k, x.dtype)
    half = ops.floor(k / 2.0)
    two = ops.cast(2.0, x.dtype)
    return x * ops.power(two, half) * ops.power(two, k - half)


def scaled_pairwise_distance(a, b=None, distance="euclidean"):
    """Pairwise distances in units of a power of two: `(d_hat, k)`, `d = d_hat * 2**k`.

    The rows are first divided by the power of two nearest below their
    largest entry (`power_of_two_scale`), so the Gram trick runs on entries in
    `[-2, 2]` whatever the scale of the embeddings (1e-30 or 1e30): `d_hat` is
    finite and accurate where `d` itself may overflow (squared distances of
    points 1e20 apart). Anything positively homogeneous in the distances and
    a margin, such as the triplet hinge `max(0, d_ap - d_an + m)`, can run on
    `(d_hat, m * 2**-k)` and be scaled back by `2**k`.

    Args:
        a: `(N, D)` embeddings.
        b: `(M, D)` embeddings; `a` itself when omitted, in which case the
            diagonal is exactly zero. Defaults to `None`.
        distance: `"euclidean"`, `"squared_euclidean"` or `"cosine"`.
            Defaults to `"euclidean"`.

    Returns:
        `(d_hat, k)`: `(N, M)` non-negative scaled distances and the scalar
        exponent `k` (0 for cosine, twice the embedding exponent for squared).

    Example:

    >>> import numpy as np
    >>> from keras_contrastive.ops.similarity import scaled_pairwise_distance
    >>> x = np.array([[0.0, 0.0], [3e20, 4e20]], "float32")
    >>> d_hat, k = scaled_pairwise_distance(x, distance="squared_euclidean")
    >>> # d_hat * 2**k = [[0, 2.5e41], [2.5e41, 0]]: beyond float32, yet d_hat is finite
    """
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        return 1.0 - cosine_similarity(a, b), 0.0
    a = ops.convert_to_tensor(a)
    k = power_of_two_scale(a) if b is None else power_of_two_scale(a, b)
    a_hat = times_power_of_two(a, -k)
    b_hat = a_hat if b is None else times_power_of_two(b, -k)
    sq_a = ops.sum(ops.square(a_hat), axis=-1, keepdims=True)
    sq_b = ops.sum(ops.square(b_hat), axis=-1, keepdims=True)
    sq = sq_a - 2.0 * ops.matmul(a_hat, ops.transpose(b_hat)) + ops.transpose(sq_b)
    sq = ops.maximum(sq, 0.0)
    if b is None:
        sq = sq * (1.0 - ops.eye(ops.shape(a)[0], dtype=sq.dtype))
    if distance == "squared_euclidean":
        return sq, 2.0 * k
    return safe_sqrt(sq), k


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

    Computed at any scale without overflow or underflow in the intermediate
    squares (see `scaled_pairwise_distance`): a result is `inf` only where
    the distance itself exceeds the float range (squared distances beyond
    ~1.8e19 in float32). The euclidean distance has a zero gradient where two
    points coincide (instead of the `inf` of `sqrt` at 0).

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> kc.ops.pairwise_distance(x)  # (3, 3): [[0, 5, 10], [5, 0, 5], [10, 5, 0]]
    >>> kc.ops.pairwise_distance(x[:1], x, distance="squared_euclidean")  # [[0, 25, 100]]
    """
    d_hat, k = scaled_pairwise_distance(a, b, distance)
    return d_hat if distance == "cosine" else times_power_of_two(d_hat, k)


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
        `(N,)` non-negative distances, `d(a[i], b[i])`, computed without
        overflow in the squares (exactly 0 for identical rows at any scale).

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> a = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> kc.ops.paired_distance(a, np.array([[3.0, 4.0], [2.0, 0.0]]))  # [5.0, 1.0]
    """
    check_choice("distance", distance, DISTANCES)
    if distance == "cosine":
        return 1.0 - ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    # Per row, in units of a power of two (exact), so the squares cannot overflow.
    top = ops.maximum(ops.max(ops.abs(a), axis=-1), ops.max(ops.abs(b), axis=-1))
    k = ops.stop_gradient(ops.floor(ops.log2(ops.where(top > 0, top, 1.0))))
    diff = times_power_of_two(a, -k[:, None]) - times_power_of_two(b, -k[:, None])
    sq = ops.sum(ops.square(diff), axis=-1)
    if distance == "squared_euclidean":
        return times_power_of_two(sq, 2.0 * k)
    return times_power_of_two(safe_sqrt(sq), k)
