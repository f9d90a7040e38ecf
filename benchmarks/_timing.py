"""Shared timing helpers for the benchmarks (TensorFlow only: used in both environments)."""

import time

import numpy as np
import tensorflow as tf
from _data import embeddings


def median_seconds(fn, repeats=5, warmup=2):
    """Median wall time of `fn()` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def clock():
    """`(wall, CPU)` seconds now; `time.process_time()` counts all threads of this process."""
    return time.perf_counter(), time.process_time()


def per_step(start, end, steps):
    """`(wall, CPU)` seconds per step between two `clock()` readings."""
    return tuple((b - a) / steps for a, b in zip(start, end, strict=True))


def fit_seconds_per_step(model, data, steps, callback_class):
    """`(wall, CPU)` seconds per step of `model.fit(data)` over `steps` steps.

    Timed by a callback from the first step's start to the last step's end,
    which leaves out what `fit` does once per call (iterator, callbacks): a
    real run of many steps pays that once. `callback_class` is
    `keras.callbacks.Callback` (Keras 3) or `tf.keras.callbacks.Callback`
    (tf-keras, in the TF Similarity worker).
    """
    times = {}

    class StepClock(callback_class):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                times["start"] = clock()

        def on_train_batch_end(self, batch, logs=None):
            times["end"] = clock()

    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[StepClock()])
    return per_step(times["start"], times["end"], steps)


class Stopwatch:
    """`with Stopwatch(n) as w: ...` sets `w.seconds` to `(wall, CPU)` seconds per step of `n`.

    CPU time includes tf.data's threads. On a machine shared with other jobs it
    is less sensitive to their load than wall time.
    """

    def __init__(self, steps):
        self.steps = steps

    def __enter__(self):
        self.start = clock()
        return self

    def __exit__(self, *exc):
        self.seconds = per_step(self.start, clock(), self.steps)


class LossAlone:
    """Forward + backward of an NT-Xent function on fixed `(B, 128)` embedding pairs."""

    def __init__(self, loss_fn, batch):
        @tf.function
        def step(za, zb):
            with tf.GradientTape() as tape:
                tape.watch([za, zb])
                value = loss_fn(za, zb)
            return tape.gradient(value, [za, zb])

        self.step, self.inputs = step, embeddings(batch)
        self.seconds_per_step(2)

    def seconds_per_step(self, steps):
        with Stopwatch(steps) as watch:
            for _ in range(steps):
                self.step(*self.inputs)[0].numpy()
        return watch.seconds
