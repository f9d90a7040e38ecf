"""Gather contrastive candidates from every replica, with gradients.

Under `tf.distribute.MirroredStrategy` (and `MultiWorkerMirroredStrategy`) each
replica scores its **local** rows against the **global** candidates of all
replicas, as SimCLR does on TPUs. The gather is an all-reduce: each replica
writes its rows at its offset into a zero `(B_global, ...)` block and the blocks
are summed (google-research/simclr's cross-replica concat). The gradient of an
all-reduce sum is the all-reduce sum of the upstream gradients, so each replica
receives, at its rows, the sum over replicas of their gradients there: the
same as `ReplicaContext.all_gather`'s.

All-reduce rather than `all_gather` (as SimCLR on TPUs): it is the collective
every strategy implements best (NCCL on GPUs, the TPU cross-replica sum, the
collective ring on CPUs, a plain sum on one device for int32 ids), and uneven
local batches need no padding. Both are collective ops keyed per strategy: two
`MirroredStrategy`s in one process clash on their keys whatever op they run,
the gradient all-reduce of `fit` included ("Shape mismatch in the collective
instance"), which `isolate_collective_keys` prevents. Outside a strategy (or
with one replica) these helpers are the identity and cost nothing.
"""

import tensorflow as tf
from keras import ops


def replica_context():
    """The current `tf.distribute.ReplicaContext` if it has >1 replicas, else None.

    Returns:
        The `tf.distribute.ReplicaContext` of the replica this runs in, or
        `None` outside a strategy, in a cross-replica context or with a single
        replica (where nothing needs gathering).

    Example:

    >>> import tensorflow as tf
    >>> import keras_contrastive as kc
    >>> kc.distribute.replica_context()  # None: no strategy
    >>> tf.distribute.MirroredStrategy().run(kc.distribute.replica_context)  # None on 1 device
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def gather_candidates(x):
    """Concatenates `x` from all replicas along axis 0.

    Args:
        x: `(b, ...)` local tensor.

    Returns:
        `(global_x, offset)`: the `(B, ...)` concatenation over replicas in
        replica order, and the index of this replica's first row in it. Local
        batches may differ in size (a final partial batch).

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> candidates, offset = kc.distribute.gather_candidates(np.zeros((4, 8)))
    >>> candidates.shape, offset  # ((4, 8), 0) on one device; (4 * replicas, 8) under a strategy
    """
    ctx = replica_context()
    if ctx is None:
        return x, 0
    x = tf.convert_to_tensor(x)
    replica_id = ctx.replica_id_in_sync_group
    local = tf.shape(x)[0]
    one_hot = tf.one_hot(replica_id, ctx.num_replicas_in_sync, dtype="int32")
    sizes = ctx.all_reduce(tf.distribute.ReduceOp.SUM, one_hot * local)  # every replica's
    offset = tf.reduce_sum(sizes[:replica_id])
    after = tf.reduce_sum(sizes) - offset - local
    # This replica's rows at its offset, zeros elsewhere: the sum is exact (ints too).
    block = tf.concat([_zeros_like_rows(x, offset), x, _zeros_like_rows(x, after)], axis=0)
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, block), offset


def _zeros_like_rows(x, rows):
    """Zeros of `x`'s dtype and trailing shape, with `rows` rows."""
    return tf.zeros(tf.concat([[rows], tf.shape(x)[1:]], axis=0), x.dtype)


def global_sum(x):
    """The sum of `x` over all replicas (no gradient: for counts).

    Args:
        x: a tensor, e.g. the number of valid anchors of this replica.

    Returns:
        The elementwise sum of `x` over replicas, of the shape of `x`; `x`
        itself (without gradient) outside a strategy or with one replica.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> kc.distribute.global_sum(np.array(3.0))  # 3.0; summed over replicas under a strategy
    """
    x = ops.stop_gradient(x)
    ctx = replica_context()
    if ctx is None:
        return x
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)
