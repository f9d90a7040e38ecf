"""Steps/s of ContrastiveModel.fit against a hand-written tf.function loop (the floor).

Same work on both sides: two-view SimCLR, small CNN encoder (no BatchNorm),
ProjectionHead(128 -> 128), NT-Xent (temperature 0.1), Adam, batch 256 of
32x32 views given as (view_1, view_2) pairs, so that augmentation is not
timed. The floor is a plain `tf.function` step doing forward, loss, backward
and update with nothing around it, fed by the same tf.data pipeline. Both run
in this process, alternately.

    python benchmarks/train_step.py [--steps 20] [--batch 256] [--jit]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_contrastive as kc  # noqa: E402


def towers(seed):
    keras.utils.set_random_seed(seed)
    encoder = kc.encoders.small_cnn(input_shape=(32, 32, 3), width=32, batch_norm=False)
    head = kc.layers.ProjectionHead(hidden_dims=(128,), output_dim=128, batch_norm=False)
    return encoder, head


def pairs(batch):
    """The same input pipeline for both sides: (view_1, view_2) batches."""
    rng = np.random.default_rng(0)
    views = tuple(rng.uniform(size=(batch, 32, 32, 3)).astype("float32") for _ in range(2))
    return tf.data.Dataset.from_tensors(views).repeat().prefetch(2)


def time_fit(batch, steps, jit):
    encoder, head = towers(0)
    model = kc.ContrastiveModel(encoder=encoder, projection_head=head)
    model.compile(optimizer="adam", loss=kc.losses.NTXentLoss(0.1), jit_compile=jit)
    data = pairs(batch)
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)  # trace + warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def time_floor(batch, steps, jit):
    encoder, head = towers(0)
    optimizer = keras.optimizers.Adam()
    weights = encoder.trainable_weights + head.trainable_weights
    optimizer.build(weights)
    batches = iter(pairs(batch))

    @tf.function(jit_compile=jit)
    def step(v1, v2):
        with tf.GradientTape() as tape:
            z = head(encoder(tf.concat([v1, v2], 0), training=True), training=True)
            z = tf.math.l2_normalize(z, -1) / np.sqrt(0.1)
            n = tf.shape(v1)[0]
            logits = tf.matmul(z, z, transpose_b=True) - 1e9 * tf.eye(2 * n)
            labels = tf.concat([tf.range(n, 2 * n), tf.range(n)], 0)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
        return loss

    for _ in range(3):
        step(*next(batches)).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(batches))
    loss.numpy()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--jit", action="store_true", help="XLA on both sides")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    fits, floors = [], []
    for _ in range(args.rounds):  # alternate, so that load changes hit both sides
        fits.append(time_fit(args.batch, args.steps, args.jit))
        floors.append(time_floor(args.batch, args.steps, args.jit))
    fit, floor = min(fits), min(floors)
    print(
        f"batch {args.batch}, XLA {args.jit}: ContrastiveModel.fit {1 / fit:.2f} steps/s, "
        f"floor {1 / floor:.2f} steps/s, fit/floor throughput = {floor / fit:.2f}"
    )


if __name__ == "__main__":
    main()
