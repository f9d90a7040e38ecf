"""`small_cnn` forward + backward with Keras' BatchNormalization vs FusedBatchNormalization.

The per-layer timing that found the gap to TF Similarity (tf-keras fuses
batch normalization into one kernel, Keras 3 does not): the same 4-block
conv net (`small_cnn()`'s layers, 512 images of 32x32, as one SimCLR step of
batch 256) with `keras.layers.BatchNormalization`, with
`kc.encoders.FusedBatchNormalization`, and without normalization, timed
alternately, medians of wall and CPU seconds.

    python benchmarks/fused_batch_norm.py [--rounds 5]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _steps import median_of_rounds  # noqa: E402
from _timing import Stopwatch  # noqa: E402

from keras_contrastive.encoders import FusedBatchNormalization  # noqa: E402

NORMALIZATIONS = {
    "keras.layers.BatchNormalization": keras.layers.BatchNormalization,
    "FusedBatchNormalization": FusedBatchNormalization,
    "none": None,
}


def conv_net(normalization):
    x = inputs = keras.Input((32, 32, 3))
    for block, multiplier in enumerate((1, 2, 4, 4), start=1):
        x = keras.layers.Conv2D(32 * multiplier, 3, padding="same", use_bias=not normalization)(x)
        x = keras.layers.ReLU()(normalization()(x) if normalization else x)
        if block < 4:
            x = keras.layers.MaxPooling2D(2)(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


class ForwardBackward:
    def __init__(self, normalization, images):
        net = conv_net(normalization)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(net(images, training=True))
            return tape.gradient(loss, net.trainable_weights)

        self.step = step
        self.seconds_per_step(2)

    def seconds_per_step(self, steps):
        with Stopwatch(steps) as watch:
            for _ in range(steps):
                self.step()[0].numpy()
        return watch.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    images = tf.constant(np.random.default_rng(0).uniform(size=(512, 32, 32, 3)), "float32")
    sides = {name: ForwardBackward(layer, images) for name, layer in NORMALIZATIONS.items()}
    seconds = median_of_rounds(sides, 2, args.rounds)
    base_wall, base_cpu = seconds["keras.layers.BatchNormalization"]
    print(f"{'normalization':<34} {'ms':>6} {'CPU ms':>7} {'speed-up (wall, CPU)':>21}")
    for name, (wall, cpu) in seconds.items():
        print(
            f"{name:<34} {1e3 * wall:6.0f} {1e3 * cpu:7.0f} "
            f"{base_wall / wall:10.2f} {base_cpu / cpu:10.2f}"
        )


if __name__ == "__main__":
    main()
