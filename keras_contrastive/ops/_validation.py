"""Argument and input checks shared by losses, layers and models.

Every check raises before any math, with the argument's name, what was expected and
what was received. Static shapes are checked always; values (finiteness, label
ranges) are checked in eager mode, and in graph mode through `tf.debugging` ops
(see `check_finite`).
"""

import numpy as np
import tensorflow as tf
from keras import ops


def check_choice(name, value, choices):
    """Raises `ValueError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}. Received: {name}={value!r}")
    return value


def check_positive(name, value):
    """Raises `ValueError` unless a Python number `value` is > 0.

    Tensors and variables (a learnable temperature) are accepted unchecked.
    """
    if isinstance(value, (int, float, np.number)):
        if not value > 0:
            raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")
    return value


def check_non_negative(name, value):
    """Raises `ValueError` unless a Python number `value` is >= 0."""
    if isinstance(value, (int, float, np.number)) and not value >= 0:
        raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
    return value


def check_rank(name, x, ranks, layout):
    """Raises `ValueError` unless `x` has one of `ranks`; `layout` documents it."""
    rank = len(x.shape)
    if rank not in ranks:
        raise ValueError(
            f"`{name}` must have shape {layout} (rank {' or '.join(map(str, ranks))})."
            f" Received: {name}.shape={tuple(x.shape)}"
        )


def check_dim(name, x, axis, size, layout):
    """Raises `ValueError` if the static size of `x` along `axis` is not `size`."""
    got = x.shape[axis]
    if got is not None and got != size:
        raise ValueError(
            f"`{name}` must have shape {layout} with {size} along axis {axis}. "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def check_same_batch(name_a, a, name_b, b):
    """Raises `ValueError` if the static leading dimensions of `a` and `b` differ."""
    n_a, n_b = a.shape[0], b.shape[0]
    if n_a is not None and n_b is not None and n_a != n_b:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same batch size. "
            f"Received: {name_a}.shape={tuple(a.shape)}, {name_b}.shape={tuple(b.shape)}"
        )


def check_min_batch(name, x, minimum=2, why="to have negatives"):
    """Raises `ValueError` if the static batch size of `x` is below `minimum`."""
    n = x.shape[0]
    if n is not None and n < minimum:
        raise ValueError(
            f"`{name}` needs a batch of at least {minimum} examples {why}. "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def check_integer_labels(name, labels):
    """Raises `TypeError` unless `labels` has an integer dtype."""
    dtype = tf.as_dtype(labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype)
    if not dtype.is_integer:
        raise TypeError(f"`{name}` must be integer class ids. Received: {name}.dtype={dtype.name}")


def check_finite(name, x):
    """Checks that `x` has only finite values.

    In eager mode this raises `ValueError` at once. In a `tf.function` it adds
    `tf.debugging.check_numerics`, which raises `tf.errors.InvalidArgumentError`
    when the graph runs. Under XLA (`jit_compile=True`) the check compiles to a
    no-op, so run the function eagerly, or without XLA, to locate a NaN.
    """
    if tf.executing_eagerly():
        if not np.all(np.isfinite(ops.convert_to_numpy(x))):
            raise ValueError(
                f"`{name}` must contain only finite values, but it has NaN or "
                f"Inf. Received: {name}.shape={tuple(x.shape)}"
            )
        return x
    return tf.debugging.check_numerics(x, f"`{name}` must contain only finite values")
