"""Timed training steps: ours (`ContrastiveModel.fit`) and the hand-written floor.

Every class builds its model once and warms up (trace, XLA compile) in
`__init__`; `seconds_per_step(steps)` then times `steps` more steps and returns
`(wall seconds, CPU seconds)` per step (`_timing`). The benchmark
scripts call the sides of a comparison alternately, several rounds, so that
load changes on the shared machine hit every side.
"""

import contextlib
import math
import statistics

import keras
import tensorflow as tf
from _data import IMAGE_SIZE, LEARNING_RATE, PROJECTION, TEMPERATURE
from _timing import Stopwatch, fit_seconds_per_step

import keras_contrastive as kc

ENCODERS = ("small_cnn", "resnet18")
CAPTION_WORDS = ("red", "green", "blue", "small", "large", "round", "square", "digit", "photo")
SEQUENCE_LENGTH = 16


def towers(encoder="small_cnn", seed=0, image_size=IMAGE_SIZE):
    """The image encoder (library defaults, BatchNorm on) and a SimCLR projection head."""
    keras.utils.set_random_seed(seed)
    shape = (image_size, image_size, 3)
    if encoder == "small_cnn":
        net = kc.encoders.small_cnn(input_shape=shape)
    else:
        net = kc.encoders.resnet(input_shape=shape, depth=18)
    head = kc.layers.ProjectionHead(hidden_dims=PROJECTION[:1], output_dim=PROJECTION[1])
    return net, head


def augmenter(seed=1):
    """SimCLR's CIFAR recipe: crop, flip, colour jitter 0.5 (p=0.8), grayscale 0.2, no blur."""
    return kc.layers.SimCLRAugmentation.cifar(image_size=(IMAGE_SIZE, IMAGE_SIZE), seed=seed)


@contextlib.contextmanager
def global_policy(policy):
    """Builds what the block builds under the Keras dtype `policy`, then restores the old one."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def augmented_in_tf_data(data, augment=None):
    """`(view_1, view_2)` batches of `data`'s image batches, augmented in tf.data.

    One vectorized `augment` call (`augmenter()` by default) per view and batch
    in a parallel `Dataset.map`, then `prefetch`: the augmentation overlaps the step.
    """
    augment = augmenter() if augment is None else augment
    data = data.map(lambda x: (augment(x), augment(x)), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def simclr_model(encoder="small_cnn", in_step_augmentation=False):
    net, head = towers(encoder)
    return kc.ContrastiveModel(
        encoder=net,
        projection_head=head,
        augmenter=augmenter() if in_step_augmentation else None,
    )


def ntxent_ours(za, zb):
    """`kc.losses.ntxent_loss` of two `(B, D)` views, averaged."""
    return tf.reduce_mean(kc.losses.ntxent_loss(None, tf.stack([za, zb], 1)))


def ntxent_floor(z):
    """NT-Xent of `(2B, D)` projections `[view_1; view_2]`, in plain TensorFlow ops."""
    z = tf.math.l2_normalize(tf.cast(z, "float32"), -1) / math.sqrt(TEMPERATURE)
    n = tf.shape(z)[0] // 2
    logits = tf.matmul(z, z, transpose_b=True) - 1e9 * tf.eye(2 * n)
    labels = tf.concat([tf.range(n, 2 * n), tf.range(n)], 0)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def one_input(data):
    """`data` as `fit` reads it: a batch of `(view_1, view_2)` is one input, `((view_1, view_2),)`.

    Keras reads a batch as `(x, y, sample_weight)`, so a pair of views is
    nested as the single `x`; the floor and the peer take the pairs as they are.
    """
    spec = data.element_spec
    pair = isinstance(spec, tuple) and len(spec) == 2
    if pair and all(isinstance(part, tf.TensorSpec) for part in spec):
        return data.map(lambda view_1, view_2: ((view_1, view_2),))
    return data


class FitStep:
    """`model.fit` on `one_input(data)` (an infinite `tf.data.Dataset`), timed per step."""

    def __init__(self, model, data, loss=None, jit=False, steps_per_execution=1):
        model.compile(
            optimizer=keras.optimizers.Adam(LEARNING_RATE),
            loss=loss,
            jit_compile=jit,
            steps_per_execution=steps_per_execution,
        )
        self.model, self.data = model, one_input(data)
        self.seconds_per_step(2 * steps_per_execution)  # trace, compile, warm up

    def seconds_per_step(self, steps):
        return fit_seconds_per_step(self.model, self.data, steps, keras.callbacks.Callback)


class FloorStep:
    """A plain `tf.function` step: forward, loss, gradient, Adam update; nothing else.

    `step_fn(batch)` returns the loss and reads `weights`, which the step updates.
    """

    def __init__(self, loss_fn, weights, data, jit=False):
        optimizer = keras.optimizers.Adam(LEARNING_RATE)
        optimizer.build(weights)

        @tf.function(jit_compile=jit)
        def step(batch):
            with tf.GradientTape() as tape:
                loss = loss_fn(batch)
            optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
            return loss

        self.step, self.batches = step, iter(data)
        self.seconds_per_step(2)

    def seconds_per_step(self, steps):
        with Stopwatch(steps) as watch:
            for _ in range(steps):
                loss = self.step(next(self.batches))
            loss.numpy()
        return watch.seconds


def simclr_floor(encoder, data, jit=False, in_step_augmentation=False, image_size=IMAGE_SIZE):
    """The floor of SimCLR two-view training on `data` (view pairs, or raw images)."""
    net, head = towers(encoder, image_size=image_size)
    augment = augmenter() if in_step_augmentation else None

    def loss_fn(batch):
        views = (augment(batch), augment(batch)) if augment is not None else batch
        z = head(net(tf.concat(views, 0), training=True), training=True)
        return ntxent_floor(z)

    return FloorStep(loss_fn, net.trainable_weights + head.trainable_weights, data, jit)


# ------------------------------------------------------------------- CLIP
def captions(count):
    """`count` short captions made of CAPTION_WORDS (deterministic)."""
    words = CAPTION_WORDS
    return [f"a {words[i % 9]} {words[(i // 9) % 9]} {words[(i // 81) % 9]}" for i in range(count)]


def clip_parts(seed=0):
    """Image and text towers with linear heads, a learnable temperature, a tokenizer."""
    keras.utils.set_random_seed(seed)
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        captions(729), vocabulary_size=64, sequence_length=SEQUENCE_LENGTH, tokenizer="whitespace"
    )
    text = kc.encoders.text_transformer(
        preprocessor.vocabulary_size, SEQUENCE_LENGTH, embed_dim=128, num_heads=2, num_layers=2
    )
    image = kc.encoders.small_cnn(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    heads = [
        kc.layers.ProjectionHead(hidden_dims=(), output_dim=PROJECTION[1], batch_norm=False)
        for _ in range(2)
    ]
    return preprocessor, image, text, heads


def clip_data(batch, preprocessor, tokenize_in_tf_data):
    """`{"image", "text"}` batches; text as raw strings or as token ids made in tf.data."""
    images = tf.random.stateless_uniform((batch, IMAGE_SIZE, IMAGE_SIZE, 3), (0, 0))
    data = tf.data.Dataset.from_tensors({"image": images, "text": tf.constant(captions(batch))})
    if tokenize_in_tf_data:
        data = data.map(lambda x: {"image": x["image"], "text": preprocessor(x["text"])})
    return data.cache().repeat().prefetch(2)


def clip_fit(batch, jit=False):
    preprocessor, image, text, (image_head, text_head) = clip_parts()
    model = kc.ContrastiveModel(
        image_encoder=image,
        text_encoder=text,
        image_head=image_head,
        text_head=text_head,
        text_preprocessor=preprocessor,
        logit_scale="learnable",
    )
    return FitStep(model, clip_data(batch, preprocessor, tokenize_in_tf_data=jit), jit=jit)


def clip_floor(batch, jit=False):
    preprocessor, image, text, (image_head, text_head) = clip_parts()
    log_scale = tf.Variable(math.log(1 / 0.07), name="log_scale")

    def loss_fn(batch):
        tokens = batch["text"] if jit else preprocessor(batch["text"])
        i = tf.math.l2_normalize(image_head(image(batch["image"], training=True)), -1)
        t = tf.math.l2_normalize(text_head(text(tokens, training=True)), -1)
        logits = tf.minimum(tf.exp(log_scale), 100.0) * tf.matmul(i, t, transpose_b=True)
        labels = tf.range(tf.shape(logits)[0])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits
        return tf.reduce_mean(ce(labels, logits) + ce(labels, tf.transpose(logits))) / 2

    weights = [log_scale]
    for layer in (image, text, image_head, text_head):
        weights += layer.trainable_weights
    return FloorStep(loss_fn, weights, clip_data(batch, preprocessor, jit), jit)


def median_of_rounds(sides, steps, rounds):
    """`{name: (wall, CPU) median seconds per step}`, the sides timed alternately.

    One untimed round first: a side's first call after the others were built
    was up to 30% slower than its next ones (0.31 vs 0.24 s per step measured
    for `FitStep`), which a single round would otherwise report.
    """
    for side in sides.values():
        side.seconds_per_step(steps)
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            times[name].append(side.seconds_per_step(steps))
    return {name: tuple(map(statistics.median, zip(*t, strict=True))) for name, t in times.items()}
