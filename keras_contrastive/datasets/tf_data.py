"""`to_dataset`: NumPy arrays to a batched, prefetched `tf.data.Dataset`."""

import numpy as np
import tensorflow as tf


def check_int(name, value, minimum):
    """Raises `ValueError` unless `value` is an int >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")


def batch_and_prefetch(dataset, buffer_size, batch_size, shuffle, seed, drop_remainder):
    """Shuffles (through `buffer_size` elements, anew each epoch), batches and prefetches."""
    check_int("batch_size", batch_size, 1)
    if shuffle:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def to_dataset(x, y=None, batch_size=128, shuffle=False, seed=0, drop_remainder=False):
    """Turns arrays into a batched, prefetched `tf.data.Dataset`.

    Args:
        x: an array, or a dict or tuple of arrays (e.g. `(view_1, view_2)`
            views or `(x_1, x_2)` pairs), with one row per example. Without
            `y`, a tuple is yielded as `(x,)`: Keras reads a batch as `(x, y,
            sample_weight)`, so several inputs are one tuple inside it.
        y: optional array of labels, one per row of `x`. Defaults to `None`
            (elements are `x` batches only, as for self-supervised training).
        batch_size: int > 0. Defaults to `128`.
        shuffle: bool, whether to shuffle all examples, anew each epoch.
            Defaults to `False`.
        seed: int, the shuffle seed. Defaults to `0`.
        drop_remainder: bool, whether to drop the last, smaller batch (keeps
            every batch the same size, e.g. to split it across replicas).
            Defaults to `False`.

    Returns:
        A `tf.data.Dataset` of `x` batches (`(x,)` for a tuple `x`), or of
        `(x, y)` batches, with tf.data's autotuning off: arrays in memory
        have no map or file reads to tune, and in TensorFlow 2.21 deleting a
        young iterator of an autotuned pipeline waits for the autotuner's
        next wake-up (at 0.63, 1.27, 2.55, 5.11 s, ... of its life). `fit`
        makes a new iterator every epoch, so on short epochs that wait cost
        20-25% of the SimCLR demo's pre-training (`benchmarks/RESULTS.md`).

    Example:

    >>> import keras_contrastive as kc
    >>> data = kc.datasets.digits()
    >>> train_ds = kc.datasets.to_dataset(*data.train, batch_size=128, shuffle=True)
    """
    size = len(tf.nest.flatten(x)[0] if isinstance(x, (dict, tuple)) else x)
    if y is None:
        dataset = tf.data.Dataset.from_tensor_slices((x,) if isinstance(x, tuple) else x)
    else:
        if len(y) != size:
            raise ValueError(
                "`x` and `y` must have the same number of rows. "
                f"Received: {size} rows in x and len(y)={len(y)}"
            )
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = batch_and_prefetch(dataset, size, batch_size, shuffle, seed, drop_remainder)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
