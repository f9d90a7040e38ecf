"""`small_cnn` with and without batch normalization: SimCLR on digits, side by side.

Trains each variant with the same SimCLR step (two augmented views, NT-Xent,
Adam) for the same number of epochs on the `digits()` training images, then
reports the kNN (k=20) top-1 accuracy of the encoder on the test split and the
median time of one training step. This is what chose `batch_norm=True` as the
default of `small_cnn`.

    python benchmarks/small_cnn_batch_norm.py [--epochs 15]
"""

import argparse
import os
import sys

import keras
import tensorflow as tf

import keras_contrastive as kc

sys.path.insert(0, os.path.dirname(__file__))
from _timing import median_seconds  # noqa: E402


def make_step(batch_norm):
    keras.utils.set_random_seed(0)
    encoder = kc.encoders.small_cnn(batch_norm=batch_norm)
    head = kc.layers.ProjectionHead(hidden_dims=(128,), output_dim=64, batch_norm=batch_norm)
    augment = kc.layers.SimCLRAugmentation(
        image_size=32,
        value_range=(0, 1),
        crop_area=(0.3, 1.0),
        flip_rate=0.0,
        rotation=15.0,
        seed=1,
    )
    loss_fn = kc.losses.NTXentLoss(temperature=0.1)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(images):
        views = tf.stack([augment(images, training=True), augment(images, training=True)], 1)
        with tf.GradientTape() as tape:
            flat = tf.reshape(views, [-1, 32, 32, 3])
            projections = head(encoder(flat, training=True), training=True)
            loss = loss_fn(tf.zeros([tf.shape(images)[0]]), tf.reshape(projections, [-1, 2, 64]))
        variables = encoder.trainable_variables + head.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    return encoder, step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    data = kc.datasets.digits()
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    dataset = kc.datasets.to_dataset(x_train, batch_size=256, shuffle=True, drop_remainder=True)
    results = {}
    for batch_norm in (True, False):
        encoder, step = make_step(batch_norm)
        for _ in range(args.epochs):
            for images in dataset:
                loss = step(images)
        batch = tf.constant(x_train[:256])
        seconds = median_seconds(lambda step=step, batch=batch: step(batch).numpy())
        embed = lambda x, encoder=encoder: encoder.predict(x, batch_size=512, verbose=0)  # noqa: E731
        knn = kc.evaluation.knn_accuracy(embed(x_train), y_train, embed(x_test), y_test, k=20)
        results[batch_norm] = seconds
        print(
            f"batch_norm={batch_norm!s:5}  final loss {float(loss):.3f}  "
            f"kNN top-1 {knn['top1']:.4f}  step {seconds * 1000:.0f} ms (batch 256, 2 views)"
        )
    print(f"step time ratio with/without BN: {results[True] / results[False]:.2f}x")


if __name__ == "__main__":
    main()
