"""MoCo's key side: momentum copies of the query towers and a FIFO queue of keys.

He et al. 2020 ("Momentum Contrast for Unsupervised Visual Representation
Learning") and Chen et al. 2020 ("Improved Baselines with Momentum Contrastive
Learning", MoCo v2): keys come from a copy of the query towers updated as an
exponential moving average, `θ_k ← m θ_k + (1 − m) θ_q`, never by the
optimizer; past keys wait in a queue and serve as extra negatives.

Under a distribution strategy every replica holds its own copy of these
variables (Keras' default aggregation `"none"` updates the local copy): the
EMA reads the synchronized query weights and the queue receives the keys
gathered from all replicas, so every replica makes the same update, without
any communication beyond the gather.
"""

import keras
from keras import ops

from keras_contrastive import losses
from keras_contrastive.distribute import gather_candidates
from keras_contrastive.ops.similarity import l2_normalize


def check_momentum_arguments(momentum, queue_size, dual):
    """Raises `ValueError` for a bad `momentum` / `queue_size` combination."""
    if momentum is None:
        if queue_size is not None:
            raise ValueError(
                "`queue_size` needs a momentum encoder: pass `momentum` too (MoCo v2: "
                f"momentum=0.999, queue_size=65536). Received: queue_size={queue_size!r}, "
                "momentum=None"
            )
        return
    if dual:
        raise ValueError(
            "`momentum` (a MoCo key encoder) applies to the two-view mode (`encoder=`), "
            f"not to the dual-encoder mode. Received: momentum={momentum!r}"
        )
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise ValueError(f"`momentum` must be a float in [0, 1). Received: momentum={momentum!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
    if queue_size is not None and (
        isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1
    ):
        raise ValueError(
            f"`queue_size` must be None or an int >= 1. Received: queue_size={queue_size!r}"
        )


def check_momentum_loss(loss):
    """Raises `ValueError` unless `loss` can train a momentum encoder with a queue."""
    if not isinstance(loss, losses.InfoNCELoss):
        raise ValueError(
            "A model with `momentum` (MoCo) trains with InfoNCELoss: queries against "
            f"momentum keys. Received: loss={loss!r}"
        )
    if loss.negative_keys is not None:
        raise ValueError(
            "With `momentum`, the negatives beyond the batch come from the model's "
            "queue: compile with InfoNCELoss(negative_keys=None). Received: "
            f"negative_keys of shape {loss.negative_keys.shape}"
        )


def momentum_copy(layer, input_shape=None):
    """A frozen copy of `layer`: same config and weights, named `key_<name>`."""
    config = keras.saving.serialize_keras_object(layer)
    config["config"]["name"] = f"key_{layer.name}"
    copy = keras.saving.deserialize_keras_object(config)
    if not copy.built:
        copy.build(input_shape)
    copy.set_weights(layer.get_weights())
    copy.trainable = False
    return copy


def ema_update(target, source, momentum):
    """`w_target ← momentum · w_target + (1 − momentum) · w_source` for float weights.

    The weights pair up in order (`target` is a `momentum_copy` of `source`),
    non-trainable ones included, so that BatchNormalization's moving
    statistics, which the frozen key towers normalize with, follow as well.
    """
    for t, s in zip(target.weights, source.weights, strict=True):
        if "float" in str(t.dtype):
            t.assign(momentum * t + (1.0 - momentum) * s)


def momentum_update(model, keys):
    """After the optimizer step: EMA of the key towers, then enqueue the batch's keys."""
    ema_update(model.key_encoder, model.encoder, model.momentum)
    if model.projection_head is not None:
        ema_update(model.key_projection_head, model.projection_head, model.momentum)
    if model.key_queue is not None:
        global_keys, _ = gather_candidates(ops.stop_gradient(keys))
        model.key_queue.enqueue(global_keys)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class KeyQueue(keras.layers.Layer):
    """A FIFO queue of L2-normalized keys: MoCo's dictionary of negatives.

    The keys are a non-trainable `(size, dim)` variable, initialised with
    random unit vectors (as MoCo's code), and `pointer` the row where the
    next batch is written; both are saved with the model.

    Args:
        size: number of keys K. MoCo: 65536.
        dim: dimension D of a key.
        seed: int seed of the random initial keys. Defaults to 0.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> queue = KeyQueue(size=8, dim=4)
    >>> queue.enqueue(keras.random.normal((2, 4)))
    >>> int(queue.pointer.numpy())
    2

    Reference: He et al., "Momentum Contrast for Unsupervised Visual
    Representation Learning", CVPR 2020.
    """

    def __init__(self, size, dim, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.dim = dim
        self.seed = seed
        self.keys = self.add_weight(
            shape=(size, dim),
            initializer=lambda shape, dtype: l2_normalize(
                keras.random.normal(shape, dtype=dtype, seed=seed)
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
        """
        keys = ops.cast(l2_normalize(keys), self.keys.dtype)
        count = ops.shape(keys)[0]
        newest = keys[-self.size :]
        kept = ops.shape(newest)[0]
        rows = (self.pointer + (count - kept) + ops.arange(kept, dtype="int32")) % self.size
        self.keys.assign(ops.scatter_update(self.keys, rows[:, None], newest))
        self.pointer.assign((self.pointer + count) % self.size)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "dim": self.dim, "seed": self.seed}
