"""Gather contrastive candidates from every replica, with gradients.

Under `tf.distribute.MirroredStrategy` (and `MultiWorkerMirroredStrategy`) each
replica scores its **local** rows against the **global** candidates of all
replicas, as SimCLR does on TPUs. `ReplicaContext.all_gather` is differentiable,
and its gradient sums the contributions of every replica, so that with Keras'
usual `1 / num_replicas` loss scaling the summed gradients equal the gradient of
the same global batch on one device. Outside a strategy (or with one replica)
these helpers are the identity and cost nothing.
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
    sizes = ctx.all_gather(tf.shape(x)[:1], axis=0)
    replica_id = ctx.replica_id_in_sync_group
    offset = ops.sum(ops.where(ops.arange(ops.shape(sizes)[0]) < replica_id, sizes, 0))
    return ctx.all_gather(x, axis=0), offset


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
