"""`KeyQueue`: MoCo's FIFO dictionary of past keys, the negatives beyond the batch."""

import keras
from keras import ops

from keras_contrastive.ops._validation import check_dim, check_int, check_rank, check_seed
from keras_contrastive.ops.similarity import l2_normalize


@keras.saving.register_keras_serializable(package="keras_contrastive")
class KeyQueue(keras.layers.Layer):
    """A FIFO queue of L2-normalized keys: MoCo's dictionary of negatives.

    The keys are a non-trainable `(size, dim)` variable, initialised with
    random unit vectors (as MoCo's code), and `pointer` the row where the
    next batch is written; both are saved with the model. `enqueue` writes a
    batch of keys over the oldest; calling the layer, `queue()`, returns the
    keys as a `(size, dim)` tensor (e.g. the extra negatives of
    `InfoNCELoss`).

    Under a `tf.distribute` strategy each replica holds its own copy
    (aggregation `"none"`): enqueue the keys gathered from all replicas, and
    every replica makes the same update.

    Args:
        size: int >= 1, the number of keys K. MoCo: `65536`.
        dim: int >= 1, the dimension D of a key.
        seed: int >= 0 or `None`, the seed of the random initial keys.
            Defaults to `0`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        `enqueue` takes `(n, dim)` keys, any `n`; `call` returns `(size, dim)`.

    Example:

    >>> queue = KeyQueue(size=8, dim=4)
    >>> queue.enqueue(keras.random.normal((2, 4)))
    >>> int(queue.pointer.numpy())
    2
    >>> queue().shape
    TensorShape([8, 4])

    References:
        - He et al., 2020. "Momentum Contrast for Unsupervised Visual
          Representation Learning" (MoCo). https://arxiv.org/abs/1911.05722
        - Chen et al., 2020. "Improved Baselines with Momentum Contrastive
          Learning" (MoCo v2). https://arxiv.org/abs/2003.04297
    """

    def __init__(self, size, dim, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.size = check_int("size", size, min=1)
        self.dim = check_int("dim", dim, min=1)
        self.seed = check_seed("seed", seed)
        self.keys = self.add_weight(
            shape=(self.size, self.dim),
            initializer=lambda shape, dtype: l2_normalize(
                keras.random.normal(shape, dtype=dtype, seed=self.seed)
            ),
            trainable=False,
            name="keys",
        )
        self.pointer = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="pointer"
        )
        self.built = True

    def enqueue(self, keys):
        """Writes `(n, dim)` keys, L2-normalized, over the oldest; advances `pointer` by n.

        Key `i` goes to row `(pointer + i) % size`, so a batch of any size
        wraps around the end of the queue; of a batch of more than `size`
        keys, the newest `size` stay.

        Args:
            keys: `(n, dim)` float tensor.
        """
        keys = ops.convert_to_tensor(keys)
        check_rank("keys", keys, (2,), "(n, dim)")
        check_dim("keys", keys, -1, self.dim, "(n, dim)")
        keys = ops.cast(l2_normalize(keys), self.keys.dtype)
        count = ops.shape(keys)[0]
        newest = keys[-self.size :]
        kept = ops.shape(newest)[0]
        rows = (self.pointer + (count - kept) + ops.arange(kept, dtype="int32")) % self.size
        self.keys.assign(ops.scatter_update(self.keys, rows[:, None], newest))
        self.pointer.assign((self.pointer + count) % self.size)

    def call(self, inputs=None):
        return ops.convert_to_tensor(self.keys)

    def compute_output_shape(self, input_shape=None):
        return (self.size, self.dim)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "dim": self.dim, "seed": self.seed}
