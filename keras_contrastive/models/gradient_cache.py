"""Gradient caching (GradCache): contrastive batches larger than the towers' memory.

Gao et al. 2021 ("Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup") split one step into three parts. The loss couples all examples
of a batch only through their embeddings, which are small; the towers, whose
activations are large, treat examples independently. So:

1. run the towers on each of `k` sub-batches without a tape, keeping only the
   embeddings;
2. compute the loss of the whole batch and its gradient with respect to the
   embeddings (and to the weights the loss reads directly: a learned
   temperature, the online probe);
3. run each sub-batch again under a tape and back-propagate its slice of the
   cached embedding gradient, summing the weight gradients.

The sum is the full-batch gradient, while the memory of activations is that of
one sub-batch. Both passes are `tf.while_loop`s with `parallel_iterations=1`,
so that sub-batches run one after another in a graph as well. Random ops replay
identically: the augmentation runs once, on the whole batch, before the
towers; random layers inside the towers (dropout) draw from their
`SeedGenerator`s, whose states pass 1 records before each sub-batch and pass 2
restores.
"""

import tensorflow as tf

from keras_contrastive.ops._validation import check_int


class GradientCache:
    """The training step of GradCache (Gao et al. 2021): one batch in `chunks` sub-batches.

    `kc.ContrastiveModel(..., gradient_cache_chunks=k)` trains with
    `GradientCache(k)`, for any method: the update equals the plain step's
    while activation memory is that of one sub-batch, for about one more
    forward pass of compute. `chunks` must divide the batch of each replica
    (use `drop_remainder=True`). The method's augmentation runs once, on the
    whole batch; random layers in the towers (dropout) replay the same draws
    in both passes. Caveat: BatchNormalization in the towers normalizes each
    sub-batch with its own statistics, so the update differs from the
    full-batch one, and its moving statistics are updated `2k` times per
    step (by each sub-batch in both passes).

    Args:
        chunks: int >= 1, the number of sub-batches. Gao et al. use
            sub-batches that fit the accelerator (e.g. 8 of 512 for 4096).

    Example:

    >>> import keras_contrastive as kc
    >>> cache = kc.models.GradientCache(chunks=4)
    >>> cache.chunks
    4

    Reference: Gao et al., "Scaling Deep Contrastive Learning Batch Size under
    Memory Limited Setup", RepL4NLP 2021.
    """

    def __init__(self, chunks):
        self.chunks = check_int("gradient_cache_chunks", chunks, min=1)

    def compute_gradients(self, model, data):
        """One training batch through `model` in `chunks` sub-batches.

        Args:
            model: a compiled, built `ContrastiveModel`.
            data: one batch, as `train_step` receives it.

        Returns:
            `(step, loss, gradients)`: the method's `Step` of the whole batch,
            the loss, and one gradient (or None) per `model.trainable_weights`,
            of the loss scaled by `model.optimizer.scale_loss`, as a plain
            step's.
        """
        chunks, method = self.chunks, model.method
        prepared = method.prepare(model, data, training=True, seed=model.step_seed(True))
        inputs = tf.nest.map_structure(lambda x: _split(x, chunks), prepared.inputs)
        seeds = _seed_states(model)
        embedded, seed_starts = _embed(model, inputs, chunks, seeds)
        weights = model.trainable_weights
        with tf.GradientTape() as tape:
            tape.watch(embedded["embeddings"])
            step = method.finish(model, prepared, embedded)
            loss = model.step_loss(step, training=True)
            scaled = model.optimizer.scale_loss(loss)
        embedding_gradient, *direct = tape.gradient(scaled, [embedded["embeddings"], *weights])
        cached = _split(embedding_gradient, chunks)
        towers = _backpropagate(model, inputs, cached, chunks, weights, seeds, seed_starts)
        return step, loss, [_add(a, b) for a, b in zip(direct, towers, strict=True)]


def _split(x, chunks):
    """`(B, ...)` -> `(chunks, B / chunks, ...)`, with a clear error if `chunks` ∤ B."""
    batch = x.shape[0]
    message = (
        f"`gradient_cache_chunks`={chunks} must divide the batch size of each replica. "
        "Use a batch size that is a multiple of gradient_cache_chunks x num_replicas, "
        "with drop_remainder=True in tf.data."
    )
    if batch is not None:
        if batch % chunks:
            raise ValueError(f"{message} Received: a batch of {batch}")
    else:
        check = tf.debugging.assert_equal(tf.shape(x)[0] % chunks, 0, message=message)
        with tf.control_dependencies([check]):
            x = tf.identity(x)
    return tf.reshape(x, tf.concat([[chunks, -1], tf.shape(x)[1:]], axis=0))


def _take(inputs, i):
    return tf.nest.map_structure(lambda x: x[i], inputs)


def _seed_states(model):
    """The `SeedGenerator` states of the model's layers: variables that are not weights."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _sequentially(fn, chunks, initial):
    """`state = fn(i, state)` for i = 1 .. chunks - 1, one iteration at a time."""
    _, state = tf.while_loop(
        lambda i, _: i < chunks,
        lambda i, state: (i + 1, fn(i, state)),
        (tf.constant(1), initial),
        parallel_iterations=1,
    )
    return state


def _embed(model, inputs, chunks, seeds):
    """Pass 1, no tape: the towers' outputs of all chunks, concatenated.

    Also returns each chunk's starting seed states, `(chunks, 2)` per
    generator. Chunk 0 runs outside the loop: its outputs give the dtypes.
    """

    def run(i):
        starts = [tf.convert_to_tensor(seed) for seed in seeds]
        return model.method.towers(model, _take(inputs, i), training=True), starts

    first = run(0)
    arrays = tf.nest.map_structure(
        lambda t: tf.TensorArray(t.dtype, size=chunks, element_shape=t.shape).write(0, t), first
    )
    arrays = _sequentially(
        lambda i, arrays: tf.nest.map_structure(lambda a, t: a.write(i, t), arrays, run(i)),
        chunks,
        arrays,
    )
    outputs, starts = arrays
    return tf.nest.map_structure(lambda a: a.concat(), outputs), [a.stack() for a in starts]


def _backpropagate(model, inputs, cached, chunks, weights, seeds, seed_starts):
    """Pass 2: each chunk again, under a tape, from its recorded seed states.

    Returns the weight gradients of `Σ_i <towers(chunk_i), cached_i>` summed
    over chunks: one per weight, None where the towers do not use it. Chunk 0
    runs outside the loop: it tells which weights have a gradient.
    """

    def gradients(i):
        for seed, starts in zip(seeds, seed_starts, strict=True):
            seed.assign(starts[i])
        with tf.GradientTape() as tape:
            y_pred = model.method.towers(model, _take(inputs, i), training=True)["embeddings"]
        return tape.gradient(y_pred, weights, output_gradients=cached[i])

    first = gradients(0)
    used = [g is not None for g in first]

    def accumulate(i, totals):
        new = [g for g, u in zip(gradients(i), used, strict=True) if u]
        return [t + tf.convert_to_tensor(g) for t, g in zip(totals, new, strict=True)]

    totals = iter(
        _sequentially(accumulate, chunks, [tf.convert_to_tensor(g) for g in first if g is not None])
    )
    return [next(totals) if u else None for u in used]


def _add(a, b):
    if a is None or b is None:
        return b if a is None else a
    return tf.convert_to_tensor(a) + b
