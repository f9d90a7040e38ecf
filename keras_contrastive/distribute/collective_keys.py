"""A collective key range of its own for each `MirroredStrategy` in a process.

`tf.distribute.MirroredStrategy` numbers its collective ops (the gradient
all-reduce, `all_reduce`, `all_gather`) from the same group and instance keys
in every strategy of a process (TF 2.21; "use random key starts" is an open to-do in
`cross_device_utils.CollectiveKeys`). The runtime remembers each key's group
size and shapes, so a second strategy in the same process (a notebook, a
sweep, a script comparing two set-ups) whose model differs from the first's
aborts in its first step: "Shape mismatch in the collective instance 100" or
"joining a group with size 4, but that group has size 2"
(tensorflow/tensorflow#62790). TensorFlow's own tests move the class-level
key base between strategies; `isolate_collective_keys` gives one strategy a
fresh range instead, before it runs anything.
"""

import itertools

import tensorflow as tf

_KEYS_PER_STRATEGY = 10_000  # group keys; instance keys count within each group
_next_range = itertools.count(1)


def isolate_collective_keys(strategy):
    """Gives `strategy` collective keys that no other strategy in the process uses.

    `kc.ContrastiveModel.compile` calls it on the model's strategy; call it on
    a strategy of your own before running collectives in a custom loop when
    the process may create several. Functions already traced under the
    strategy keep their keys; functions traced afterwards use the new ones.
    Strategies other than a multi-replica `tf.distribute.MirroredStrategy`
    (one device, `MultiWorkerMirroredStrategy`, TPUs) are returned unchanged.

    Args:
        strategy: a `tf.distribute.Strategy`.

    Returns:
        `strategy`, so that it can wrap the constructor.

    Example:

    >>> import tensorflow as tf
    >>> import keras_contrastive as kc
    >>> strategy = kc.distribute.isolate_collective_keys(tf.distribute.MirroredStrategy())
    """
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
        return strategy
    if strategy.num_replicas_in_sync == 1:
        return strategy
    # TensorFlow's private seam, the one its tests use (`_collective_key_base`),
    # on this strategy only: rebuild its collective ops from a new key base.
    extended = strategy.extended
    previous = extended._collective_ops
    extended._collective_key_base = next(_next_range) * _KEYS_PER_STRATEGY
    extended._collective_ops = extended._make_collective_ops_with_fallbacks()
    if extended._cross_device_ops is previous:  # the default: not the user's choice
        extended._cross_device_ops = extended._collective_ops
    return strategy
