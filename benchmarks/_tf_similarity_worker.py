"""TF Similarity 0.17.1 side of `peer_tf_similarity.py`; runs in its own virtual environment.

Started by `peer_tf_similarity.py` with the venv's Python and
`TF_USE_LEGACY_KERAS=1` (TF Similarity needs tf-keras). It reads one JSON job
per line on stdin and answers each with a line `RESULT {json}` on stdout:

- `{"cmd": "simclr", "encoder": ..., "batch": ..., "augment": bool, "jit": bool,
  "policy": "float32"}` builds `tfsim.models.ContrastiveModel(algorithm="simclr")`
  with `tfsim.losses.SimCLRLoss`, the same encoder architecture as ours (rebuilt
  in tf.keras) and Adam, then warms up; with `augment` the views come from
  TF Similarity's `simclr_training_augmentation` mapped per image in tf.data
  (its documented use), else from the same pre-made view pairs as ours. Under
  a mixed `policy` the projector ends in a float32 linear activation, the
  Keras mixed-precision guide's fix: `SimCLRLoss` fails on bfloat16/float16
  projections ("Input 'y' of 'Sub' Op has type float32 that does not match").
- `{"cmd": "time", "steps": n}` times `n` more steps of the current model
  (wall and CPU seconds per step).
- `{"cmd": "profile", "steps": n, "logdir": ...}` traces `n` more steps with
  `tf.profiler` and answers with `_profile.op_milliseconds` of the trace.
- `{"cmd": "loss", "batch": ...}` makes `SimCLRLoss` forward and backward on
  fixed embeddings the current "model" (`time` then times that).

It imports nothing from keras_contrastive.
"""

import json
import sys

import tensorflow as tf
from _data import (
    IMAGE_SIZE,
    LEARNING_RATE,
    PROJECTION,
    TEMPERATURE,
    raw_images,
    view_pairs,
)
from _profile import op_milliseconds, trace
from _timing import LossAlone, fit_seconds_per_step
from tensorflow_similarity.augmenters.simclr import simclr_training_augmentation
from tensorflow_similarity.losses import SimCLRLoss
from tensorflow_similarity.models import ContrastiveModel

layers = tf.keras.layers


def small_cnn(width=32, size=IMAGE_SIZE):
    """`kc.encoders.small_cnn()` (BatchNorm on) in tf.keras, for `size` x `size` images."""
    inputs = layers.Input((size, size, 3))
    x = inputs
    for block, multiplier in enumerate((1, 2, 4, 4), start=1):
        x = layers.Conv2D(width * multiplier, 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        if block < 4:
            x = layers.MaxPooling2D(2)(x)
    return tf.keras.Model(inputs, layers.GlobalAveragePooling2D()(x))


def _conv_bn(x, filters, kernel_size, strides):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def resnet18():
    """`kc.encoders.resnet(depth=18)` (the CIFAR ResNet-18 of SimCLR) in tf.keras."""
    inputs = layers.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = layers.ReLU()(_conv_bn(inputs, 64, 3, 1))
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in (1, 2):
            strides = 2 if stage > 1 and block == 1 else 1
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = _conv_bn(x, filters, 1, strides)
            y = layers.ReLU()(_conv_bn(x, filters, 3, strides))
            x = layers.ReLU()(layers.Add()([shortcut, _conv_bn(y, filters, 3, 1)]))
    return tf.keras.Model(inputs, layers.GlobalAveragePooling2D()(x))


def projector(input_dim, float32_output=False):
    """`kc.layers.ProjectionHead(hidden_dims=(512,), output_dim=128)` in tf.keras."""
    bn = {"momentum": 0.9, "epsilon": 1e-5}
    inputs = layers.Input((input_dim,))
    x = layers.Dense(PROJECTION[0], use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization(**bn)(x))
    x = layers.Dense(PROJECTION[1], use_bias=False)(x)
    x = layers.BatchNormalization(center=False, **bn)(x)
    if float32_output:
        x = layers.Activation("linear", dtype="float32")(x)
    return tf.keras.Model(inputs, x)


def augmented_views(batch, size=IMAGE_SIZE, jitter_strength=0.5):
    """TF Similarity's SimCLR augmentation (CIFAR jitter strength 0.5 by default) per image."""

    def two_views(image):
        image = tf.cast(image, "float32") / 255.0
        return tuple(
            simclr_training_augmentation(image, size, size, jitter_stength=jitter_strength)
            for _ in range(2)
        )

    data = tf.data.Dataset.from_tensor_slices(raw_images(batch, size)).repeat()
    data = data.map(two_views, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


class Simclr:
    """The peer's SimCLR model and its data, `size` x `size` images (32 by default)."""

    def __init__(
        self, encoder, batch, augment, jit, policy="float32", size=IMAGE_SIZE, jitter_strength=0.5
    ):
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(0)
        tf.keras.mixed_precision.set_global_policy(policy)
        backbone = small_cnn(size=size) if encoder == "small_cnn" else resnet18()
        head = projector(backbone.output_shape[-1], float32_output=policy != "float32")
        self.model = ContrastiveModel(backbone=backbone, projector=head, algorithm="simclr")
        self.model.compile(
            optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
            loss=SimCLRLoss(temperature=TEMPERATURE),
            jit_compile=jit,
        )
        if augment:
            self.data = augmented_views(batch, size, jitter_strength)
        else:
            self.data = view_pairs(batch, size)
        self.seconds_per_step(2)
        tf.keras.mixed_precision.set_global_policy("float32")

    def seconds_per_step(self, steps):
        return fit_seconds_per_step(self.model, self.data, steps, tf.keras.callbacks.Callback)


def simclr_loss(za, zb):
    """`SimCLRLoss` of two `(B, D)` views, averaged."""
    return tf.reduce_mean(SimCLRLoss(temperature=TEMPERATURE).call(za, zb))


def main():
    model = None
    for line in sys.stdin:
        job = json.loads(line)
        if job["cmd"] == "time":
            result = {"seconds": model.seconds_per_step(job["steps"])}
        elif job["cmd"] == "profile":
            trace(model, job["steps"], job["logdir"])
            result = {"milliseconds": op_milliseconds(job["logdir"], job["steps"])}
        else:
            model = None  # frees the previous model first
            if job["cmd"] == "simclr":
                model = Simclr(
                    job["encoder"], job["batch"], job["augment"], job["jit"], job["policy"]
                )
            else:
                model = LossAlone(simclr_loss, job["batch"])
            result = {"ok": True}
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
