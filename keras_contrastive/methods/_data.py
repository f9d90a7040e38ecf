"""Reading a training batch as Keras does, with errors that name the method's layout."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.ops._validation import check_same_batch


def describe(data):
    """A short description of a batch's structure, for error messages."""
    if isinstance(data, dict):
        return "dict with keys " + str(sorted(data))
    if isinstance(data, (tuple, list)):
        return "(" + ", ".join(describe(x) for x in data) + ")"
    if tf.is_tensor(data):
        return f"tensor{tuple(data.shape)} {data.dtype.name}"
    return type(data).__name__


def structure_error(layout, data, hint=""):
    return ValueError(
        f"ContrastiveModel received a batch of the wrong structure. Expected {layout}. "
        f"Received: {describe(data)}.{' ' + hint if hint else ''}"
    )


def unpack(data, layout):
    """`(x, y, sample_weight)` of a batch, by Keras' rule (`keras.utils.unpack_x_y_sample_weight`).

    A batch is `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`: a tuple's
    first element is always the inputs. Several inputs (two views, a pair)
    are one tuple inside it: `((view_1, view_2),)`.
    """
    if isinstance(data, (tuple, list)) and len(data) > 3:
        raise structure_error(layout, data)
    return keras.utils.unpack_x_y_sample_weight(data)


def flat_ids(name, y, data, layout, reference):
    """`(B,)` ids (class labels, group ids or pair flags) from `y` of `(B,)` or `(B, 1)`.

    Anything else is refused with the layout, since a `y` of another shape is
    most often a second view yielded as `(view_1, view_2)` (Keras reads that
    as `(x, y)`).
    """
    y = ops.convert_to_tensor(y)
    if len(y.shape) not in (1, 2) or tuple(y.shape[1:]) not in ((), (1,)):
        raise structure_error(
            layout,
            data,
            f"`y` ({name}) must be (B,) or (B, 1). A batch is read as Keras reads it, "
            "`(x, y, sample_weight)`: two views made in tf.data are one input, "
            "`((view_1, view_2),)`, e.g. `dataset.map(lambda a, b: ((a, b),))`.",
        )
    y = ops.reshape(y, (-1,)) if len(y.shape) == 2 else y
    return check_same_batch(name, y, "x", reference)


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


def stack_pair(names, x, data, layout):
    """`(B, 2, ...)` from a tuple of two inputs of one shape and batch size."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise structure_error(layout, data)
    first, second = (ops.convert_to_tensor(part) for part in x)
    second = check_same_batch(names[1], second, names[0], first)
    first = check_same_shape(names[0], first, names[1], second)
    return ops.stack((first, second), axis=1)


def check_sample_weight(sample_weight, reference):
    if sample_weight is None:
        return None
    return check_same_batch("sample_weight", sample_weight, "x", reference)
