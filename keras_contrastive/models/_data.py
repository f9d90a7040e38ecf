"""Reading a training batch: what the dataset yields, per mode, with clear errors."""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass
class Batch:
    """One batch, read: inputs, optional labels and sample weights."""

    inputs: object  # a tensor, a (view_1, view_2) tuple, or a dict
    labels: object = None
    sample_weight: object = None


def _is_label_like(x):
    return tf.is_tensor(x) and (x.shape.rank == 1 or (x.shape.rank == 2 and x.shape[-1] == 1))


def _describe(data):
    if isinstance(data, dict):
        return "dict with keys " + str(sorted(data))
    if isinstance(data, (tuple, list)):
        return "(" + ", ".join(_describe(x) for x in data) + ")"
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
    raise ValueError(f"Expected {expected}. Received: {_describe(data)}")


def structure_error(expected, data, hint=""):
    return ValueError(
        f"ContrastiveModel received a batch of the wrong structure. Expected {expected}. "
        f"Received: {_describe(data)}.{' ' + hint if hint else ''}"
    )
