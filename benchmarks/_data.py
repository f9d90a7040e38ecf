"""Synthetic benchmark inputs, identical in every process (NumPy seed 0).

Imports only NumPy and TensorFlow, so that the TF Similarity worker (tf-keras,
another virtual environment) builds exactly the same batches as our side.
"""

import numpy as np
import tensorflow as tf

IMAGE_SIZE = 32
TEMPERATURE = 0.1
LEARNING_RATE = 1e-3
PROJECTION = (512, 128)  # hidden and output width of the projection head


def view_pairs(batch, size=IMAGE_SIZE):
    """`(view_1, view_2)` float32 batches in [0, 1] of `size`: augmentation is not timed."""
    rng = np.random.default_rng(0)
    shape = (batch, size, size, 3)
    views = tuple(rng.uniform(size=shape).astype("float32") for _ in range(2))
    return tf.data.Dataset.from_tensors(views).repeat().prefetch(2)


def raw_images(batch, size=IMAGE_SIZE):
    """`4 * batch` uint8 images of `size` x `size`, to be augmented into views."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4 * batch, size, size, 3), dtype="uint8")


def image_batches(batch, size=IMAGE_SIZE):
    """Batches of `raw_images(batch, size)`, repeated: the input of in-step augmentation."""
    data = tf.data.Dataset.from_tensor_slices(raw_images(batch, size)).repeat()
    return data.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def embeddings(batch, dim=128):
    """Two `(batch, dim)` float32 views of embeddings, for the loss-alone timing."""
    rng = np.random.default_rng(0)
    return tuple(tf.constant(rng.normal(size=(batch, dim)).astype("float32")) for _ in range(2))
