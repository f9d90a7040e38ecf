"""Input checks and batched embedding shared by the evaluation tools and callbacks.

Evaluation runs eagerly on NumPy arrays: every check here raises `ValueError` or
`TypeError` naming the argument, what was expected and what was received.
"""

import numpy as np
import tensorflow as tf
from keras import ops

from keras_contrastive.ops._validation import check_integer_labels


def as_embeddings(name, x):
    """`x` as a finite, non-empty `(N, D)` float32 NumPy array."""
    x = np.asarray(ops.convert_to_numpy(x))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty (N, D) matrix of embeddings. "
            f"Received: {name}.shape={x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"`{name}` must hold numbers. Received: {name}.dtype={x.dtype}")
    x = x.astype("float32", copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"`{name}` must contain only finite values, but it has NaN or Inf. "
            f"Received: {name}.shape={x.shape}"
        )
    return x


def check_same_dimension(name, x, other_name, other):
    """Raises `ValueError` unless the `(N, D)` arrays `x` and `other` have the same `D`."""
    if x.shape[1] != other.shape[1]:
        raise ValueError(
            f"`{name}` must have the dimension of `{other_name}`. "
            f"Received: {name}.shape={x.shape}, {other_name}.shape={other.shape}"
        )


def as_labels(name, y, count, count_name):
    """`y` as a `(count,)` int64 array of non-negative class ids."""
    y = np.asarray(ops.convert_to_numpy(y))
    check_integer_labels(name, y)
    if y.shape != (count,):
        raise ValueError(
            f"`{name}` must have shape ({count},), one label per row of "
            f"`{count_name}`. Received: {name}.shape={y.shape}"
        )
    if np.any(y < 0):
        raise ValueError(f"`{name}` must be non-negative class ids. Received: min={y.min()}")
    return y.astype("int64")


def check_k(name, k, limit, limit_name):
    """Raises unless `k` is an integer in `[1, limit]`."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={k!r}")
    if k > limit:
        raise ValueError(
            f"`{name}` must be at most the number of {limit_name} ({limit}). Received: {name}={k}"
        )
    return int(k)


def top_k_accuracy(scores, labels, ks=(1, 5)):
    """`{"top1": ..., "top5": ...}`: how often the label is among the best classes.

    `scores` is `(N, C)`; ties go to the lower class id. With fewer than 5
    classes, top-5 counts all of them (and is 1.0).
    """
    ranking = np.argsort(-scores, axis=1, kind="stable")
    return {
        f"top{k}": float(np.mean(np.any(ranking[:, :k] == labels[:, None], axis=1))) for k in ks
    }


def _slices(x, batch_size):
    return (x[i : i + batch_size] for i in range(0, len(x), batch_size))


def labeled_batches(data, name, batch_size):
    """Yields `(x, y)` batches from an `(x, y)` tuple or a dataset of `(x, y)`."""
    if isinstance(data, tf.data.Dataset):
        for element in data:
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError(
                    f"`{name}` must yield (x, y) batches. Received an element "
                    f"of type {type(element).__name__}"
                )
            yield element
        return
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"`{name}` must be an (x, y) tuple of arrays or a tf.data.Dataset of "
            f"(x, y) batches. Received: {name} of type {type(data).__name__}"
        )
    x, y = data
    if len(x) != len(y):
        raise ValueError(
            f"`{name}` must have as many labels as inputs. "
            f"Received: len(x)={len(x)}, len(y)={len(y)}"
        )
    yield from zip(_slices(x, batch_size), _slices(y, batch_size), strict=True)


def input_batches(data, batch_size):
    """Yields input batches from an array or a dataset of input batches."""
    if isinstance(data, tf.data.Dataset):
        yield from data
    else:
        yield from _slices(data, batch_size)


def embed(encoder, batches, name):
    """Runs `encoder` (or the identity when `None`) over `batches`: `(N, D)`."""
    outputs = [ops.convert_to_numpy(x if encoder is None else encoder(x)) for x in batches]
    if not outputs:
        raise ValueError(f"`{name}` must not be empty.")
    return as_embeddings(name if encoder is None else f"encoder({name})", np.concatenate(outputs))


def embed_labeled(encoder, data, name, batch_size):
    """`(embeddings (N, D), labels (N,))` of labeled `data` through `encoder`."""
    labels = []

    def inputs():
        for x, y in labeled_batches(data, name, batch_size):
            labels.append(ops.convert_to_numpy(y))
            yield x

    embeddings = embed(encoder, inputs(), name)
    labels = as_labels(f"labels of {name}", np.concatenate(labels), len(embeddings), name)
    return embeddings, labels
