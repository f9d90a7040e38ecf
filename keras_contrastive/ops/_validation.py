"""Argument and input checks shared by losses, layers and models.

Every check raises before any math, with the argument's name, what was expected and
what was received. Static shapes are checked always; values (finiteness, label
ranges) are checked in eager mode, and in graph mode through `tf.debugging` ops
(see `check_finite`).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def check_choice(name, value, choices):
    """Raises `ValueError` unless `value` is one of `choices`."""
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}. Received: {name}={value!r}")
    return value


def _range_text(low, high, low_inclusive, high_inclusive):
    if low is not None and high is not None:
        return f"in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {low}"
    if high is not None:
        return f"{'<=' if high_inclusive else '<'} {high}"
    return ""


def _in_range(x, low, high, low_inclusive, high_inclusive):
    above = low is None or (x >= low if low_inclusive else x > low)
    below = high is None or (x <= high if high_inclusive else x < high)
    return above and below


def _concrete_scalar(name, value, what):
    """`value` as a NumPy scalar if it is a number, numpy scalar or eager tensor."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"`{name}` must be {what}. Received: {name}={value!r}")
    if isinstance(value, (int, float, np.number)):
        return np.asarray(value)[()]
    if isinstance(value, np.ndarray) or (tf.is_tensor(value) and hasattr(value, "numpy")):
        array = np.asarray(value)
        if array.shape == () and np.issubdtype(array.dtype, np.number):
            return array[()]
    raise TypeError(f"`{name}` must be {what}. Received: {name}={value!r}")


def check_number(
    name,
    value,
    min=None,
    max=None,
    min_inclusive=True,
    max_inclusive=True,
    allow_none=False,
    allow_variable=False,
):
    """Checks that `value` is a finite real number in a range; returns it.

    Python and NumPy numbers and concrete (eager) scalar tensors are checked by
    value; `bool`, strings and other objects raise `TypeError`; NaN, inf and
    values out of range raise `ValueError`. With `allow_variable=True` a
    `keras.Variable` or `tf.Variable` (a learnable temperature) is returned
    unchecked, as is a symbolic tensor inside a `tf.function`.

    Args:
        name: str, the argument's name, used in the message.
        value: the value received.
        min: the lower bound, or `None` for none. Defaults to `None`.
        max: the upper bound, or `None` for none. Defaults to `None`.
        min_inclusive: bool, whether `value == min` is accepted. Defaults to `True`.
        max_inclusive: bool, whether `value == max` is accepted. Defaults to `True`.
        allow_none: bool, whether `None` is accepted. Defaults to `False`.
        allow_variable: bool, whether a variable is accepted. Defaults to `False`.

    Returns:
        `value`, with NumPy scalars and eager tensors as Python numbers.

    Example:

    >>> from keras_contrastive.ops._validation import check_number
    >>> check_number("temperature", 0.1, min=0, min_inclusive=False)
    0.1
    """
    if value is None and allow_none:
        return None
    condition = _range_text(min, max, min_inclusive, max_inclusive)
    what = f"a finite number {condition}".rstrip()
    if isinstance(value, (tf.Variable, keras.Variable)) or (
        tf.is_tensor(value) and not hasattr(value, "numpy")
    ):
        if allow_variable or not isinstance(value, (tf.Variable, keras.Variable)):
            return value
        raise TypeError(f"`{name}` must be {what}, not a variable. Received: {name}={value!r}")
    scalar = _concrete_scalar(name, value, what)
    if not (np.isfinite(scalar) and _in_range(scalar, min, max, min_inclusive, max_inclusive)):
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return value if isinstance(value, (int, float)) else scalar.item()


def check_int(name, value, min=None, max=None, allow_none=False):
    """Checks that `value` is an integer (not a `bool`) in `[min, max]`; returns it.

    Python ints, NumPy integers and concrete integer scalar tensors are
    accepted; floats (even `16.0`), strings and `bool` raise `TypeError`, values
    out of range `ValueError`.

    Args:
        name: str, the argument's name, used in the message.
        value: the value received.
        min: the smallest value accepted, or `None`. Defaults to `None`.
        max: the largest value accepted, or `None`. Defaults to `None`.
        allow_none: bool, whether `None` is accepted. Defaults to `False`.

    Returns:
        `value` as a Python `int` (or `None`).

    Example:

    >>> from keras_contrastive.ops._validation import check_int
    >>> check_int("output_dim", 128, min=1)
    128
    """
    if value is None and allow_none:
        return None
    what = f"an int {_range_text(min, max, True, True)}".rstrip()
    scalar = _concrete_scalar(name, value, what)
    if not np.issubdtype(np.asarray(scalar).dtype, np.integer):
        raise TypeError(f"`{name}` must be {what}. Received: {name}={value!r}")
    if not _in_range(scalar, min, max, True, True):
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return int(scalar)


def check_positive(name, value, allow_variable=True):
    """`check_number` for a finite number > 0 (a variable is accepted by default)."""
    return check_number(name, value, min=0, min_inclusive=False, allow_variable=allow_variable)


def check_non_negative(name, value):
    """`check_number` for a finite number >= 0."""
    return check_number(name, value, min=0)


def check_probability(name, value):
    """`check_number` for a finite number in [0, 1]."""
    return check_number(name, value, min=0, max=1)


def check_bool(name, value):
    """Raises `TypeError` unless `value` is a `bool` (or NumPy bool); returns it."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def check_seed(name, value):
    """Checks a seed: `None` or an int >= 0; returns it as `int` or `None`."""
    return check_int(name, value, min=0, allow_none=True)


def check_interval(name, value, min=None, max=None, increasing=False):
    """Checks a `(low, high)` pair of finite numbers with `min < low <= high <= max`.

    `increasing=True` requires `low < high`. Returns the pair as a tuple.

    Example:

    >>> from keras_contrastive.ops._validation import check_interval
    >>> check_interval("crop_area", (0.08, 1.0), min=0, max=1)
    (0.08, 1.0)
    """
    bounds = "low < high" if increasing else "low <= high"
    bounds = bounds if min is None else f"{min} < {bounds}"
    bounds = bounds if max is None else f"{bounds} <= {max}"
    what = f"a (low, high) pair of finite numbers with {bounds}"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        kind = ValueError if isinstance(value, (int, float, np.number)) else TypeError
        raise kind(f"`{name}` must be {what}. Received: {name}={value!r}")
    try:
        low, high = (check_number(name, x, min=min, max=max, min_inclusive=False) for x in value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"`{name}` must be {what}. Received: {name}={value!r}") from None
    if not (low < high if increasing else low <= high):
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return (low, high)


def check_size_pair(name, value, min=1):
    """Checks an int or a pair of ints, each >= `min`; returns an `(int, int)` tuple.

    Example:

    >>> from keras_contrastive.ops._validation import check_size_pair
    >>> check_size_pair("image_size", 32)
    (32, 32)
    """
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(
            f"`{name}` must be an int or a pair of ints >= {min}. Received: {name}={value!r}"
        )
    try:
        return tuple(check_int(name, size, min=min) for size in pair)
    except (TypeError, ValueError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        raise kind(
            f"`{name}` must be an int or a pair of ints >= {min}. Received: {name}={value!r}"
        ) from None


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


def _checked_in_graph(x, assertion):
    """`x`, run after `assertion` (a `tf.debugging` op) when tracing a graph."""
    with tf.control_dependencies([assertion]):
        return tf.identity(x)


def check_same_batch(name_a, a, name_b, b):
    """Checks that `a` and `b` have the same leading dimension; returns `a`.

    Static sizes raise `ValueError` at once; when either is unknown (a
    `tf.function` traced with a `None` batch) a `tf.debugging.assert_equal`
    raises `tf.errors.InvalidArgumentError` with the same message when run.
    """
    n_a, n_b = a.shape[0], b.shape[0]
    message = f"`{name_a}` and `{name_b}` must have the same batch size."
    if n_a is not None and n_b is not None:
        if n_a != n_b:
            raise ValueError(
                f"{message} Received: {name_a}.shape={tuple(a.shape)}, "
                f"{name_b}.shape={tuple(b.shape)}"
            )
        return a
    if tf.executing_eagerly():
        return a
    assertion = tf.debugging.assert_equal(
        tf.shape(a)[0], tf.shape(b)[0], message=f"{message} Received batch sizes"
    )
    return _checked_in_graph(a, assertion)


def min_batch_message(name, minimum=2, why="to have negatives"):
    """The message of `check_min_batch`, shared with the model's per-replica check."""
    examples = "example" if minimum == 1 else "examples"
    return (
        f"`{name}` needs a batch of at least {minimum} {examples} {why}".rstrip()
        + ". A short final "
        "batch (e.g. 9 examples in batches of 4) has too few: batch the dataset with "
        "`drop_remainder=True` (e.g. `dataset.batch(batch_size, drop_remainder=True)`)."
    )


def check_min_batch(name, x, minimum=2, why="to have negatives"):
    """Checks that the batch of `x` has at least `minimum` examples; returns `x`.

    A static batch raises `ValueError` at once; an unknown one (a `None`
    batch in `tf.function`, as in `fit` without `drop_remainder=True`) adds a
    `tf.debugging` assert that raises `tf.errors.InvalidArgumentError` with the
    same message when a short batch arrives.
    """
    n = x.shape[0]
    message = min_batch_message(name, minimum, why)
    if minimum <= 0:
        return x
    if n is not None:
        if n < minimum:
            raise ValueError(f"{message} Received: {name}.shape={tuple(x.shape)}")
        return x
    if tf.executing_eagerly():
        return x
    assertion = tf.debugging.assert_greater_equal(
        tf.shape(x)[0], minimum, message=f"{message} Received batch size"
    )
    return _checked_in_graph(x, assertion)


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
