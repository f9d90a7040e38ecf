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
        have no map or file reads to tune, and `fit`, which makes a new
        iterator every epoch, then costs a steady ~3 ms per epoch besides
        its steps, where the same pipeline autotuned had epochs of up to
        165 ms and NumPy arrays passed to `fit` 42 ms per epoch
        (`benchmarks/epoch_overhead.py`), a large part of short epochs
        such as the SimCLR demo's 5 steps; with oneDNN at AVX2, autotuning
        also cost 0.7-1.25 s per `fit` call (`benchmarks/fit_warmup.py`).
        Pass `shuffle=False` to `fit`: the dataset shuffles itself.

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
