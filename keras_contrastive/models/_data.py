"""Reading a training batch: what the dataset yields, per mode, with clear errors."""

import dataclasses

import tensorflow as tf

from keras_contrastive.ops._validation import check_same_batch


@dataclasses.dataclass
class Batch:
    """One batch, read: inputs, optional labels and sample weights."""

    inputs: object  # a tensor, a (view_1, view_2) tuple, or a dict
    labels: object = None
    sample_weight: object = None


def _is_label_like(x):
    return tf.is_tensor(x) and (x.shape.rank == 1 or (x.shape.rank == 2 and x.shape[-1] == 1))


def describe(data):
    if isinstance(data, dict):
        return "dict with keys " + str(sorted(data))
    if isinstance(data, (tuple, list)):
        return "(" + ", ".join(describe(x) for x in data) + ")"
    if tf.is_tensor(data):
        return f"tensor{tuple(data.shape)} {data.dtype.name}"
    return type(data).__name__


def read_batch(data, expected):
    """Splits `data` into a `Batch`.

    Accepted: `x`; `(x,)`; `(x, labels)`; `(x, labels, sample_weight)`; and
    `(view_1, view_2)`, told apart from `(x, labels)` because labels are
    `(B,)` (or `(B, 1)`) while views are images or feature vectors.
    """
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return Batch(data)
    if len(data) == 1:
        return Batch(data[0])
    if len(data) == 2:
        first, second = data
        if isinstance(first, tuple) or isinstance(first, dict) or _is_label_like(second):
            return Batch(first, second)
        return Batch((first, second))
    if len(data) == 3:
        return Batch(*data)
    raise ValueError(f"Expected {expected}. Received: {describe(data)}")


def structure_error(expected, data, hint=""):
    return ValueError(
        f"ContrastiveModel received a batch of the wrong structure. Expected {expected}. "
        f"Received: {describe(data)}.{' ' + hint if hint else ''}"
    )


def check_same_shape(name_a, a, name_b, b):
    """Checks that the examples of `a` and `b` (e.g. two views) have one shape; returns `a`.

    The shapes after the batch axis are compared: known sizes at once
    (`ValueError`), unknown ones in a `tf.function` by a `tf.debugging`
    assert (`tf.errors.InvalidArgumentError`).
    """
    message = f"`{name_a}` and `{name_b}` must have the same shape after the batch axis"
    received = f"Received: {name_a}.shape={tuple(a.shape)}, {name_b}.shape={tuple(b.shape)}"
    if a.shape.rank != b.shape.rank or not a.shape[1:].is_compatible_with(b.shape[1:]):
        raise ValueError(f"{message}. {received}")
    if a.shape[1:].is_fully_defined() and b.shape[1:].is_fully_defined():
        return a
    assertion = tf.debugging.assert_equal(
        tf.shape(a)[1:], tf.shape(b)[1:], message=f"{message}. {received}; in this batch"
    )
    with tf.control_dependencies([assertion]):
        return tf.identity(a)


def check_batch_parts(reference_name, reference, **parts):
    """Checks that each of `parts` (None skipped) has the batch size of `reference`.

    Returns the parts in order, each run after its check when the sizes are
    only known at run time (see `ops._validation.check_same_batch`).
    """
    return [
        None if part is None else check_same_batch(name, part, reference_name, reference)
        for name, part in parts.items()
    ]
