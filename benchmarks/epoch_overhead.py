"""What an epoch of `fit` costs besides its steps, by input: arrays, tf.data, `to_dataset`.

`fit` makes a new iterator of its input every epoch (of a tf.data pipeline it
builds itself when given arrays). With tf.data's autotuning on (the default),
short epochs cost more besides their steps than with it off
(`kc.datasets.to_dataset` turns it off). Each side in a fresh process,
interleaved over `--rounds`: `fit` on an MLP (64 -> `--width` -> `--width` ->
10), `--epochs` epochs of `--steps` steps of 256 rows, fed as NumPy arrays
(Keras builds an autotuned pipeline), as a tf.data pipeline of the arrays
with autotuning on, and as `kc.datasets.to_dataset`; the floor is a
`tf.function` train step in a Python loop over one iterator. Prints the median
step time and the median and largest cost of an epoch besides its steps (the
first epoch, which traces, left out).

    python benchmarks/epoch_overhead.py
    python benchmarks/epoch_overhead.py --quick    # 1 round, fewer epochs
"""

import argparse
import json
import statistics
import time

from _cpu import cpu, run_worker

SIDES = ("fit arrays", "fit tf.data", "fit to_dataset", "floor")
BATCH = 256


def pipeline(x, autotune):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=0)
    dataset = dataset.batch(BATCH).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = autotune
    return dataset.with_options(options)


def worker(side, epochs, steps, width):
    """Seconds: each epoch's time besides its steps (the first left out), and every step's."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_contrastive as kc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * BATCH, 64)).astype("float32")
    y = rng.integers(0, 10, size=len(x))
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(width, "relu"),
            keras.layers.Dense(width, "relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    step_times, epoch_times = [], []
    if side == "floor":
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.optimizer.build(model.trainable_weights)

        @tf.function
        def train_step(batch_x, batch_y):
            with tf.GradientTape() as tape:
                loss = loss_fn(batch_y, model(batch_x, training=True))
            gradients = tape.gradient(loss, model.trainable_weights)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_weights, strict=True))
            return loss

        batches = iter(pipeline((x, y), autotune=False).repeat())
        for _ in range(epochs):
            start, before = time.perf_counter(), len(step_times)
            for _ in range(steps):
                step_start = time.perf_counter()
                train_step(*next(batches)).numpy()
                step_times.append(time.perf_counter() - step_start)
            epoch_times.append(time.perf_counter() - start - sum(step_times[before:]))
        return {"overheads": epoch_times[1:], "steps": step_times[steps:]}

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start, self.before = time.perf_counter(), len(step_times)

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.epoch_start)

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            step_times.append(time.perf_counter() - self.start)

    if side == "fit arrays":
        inputs = {"x": x, "y": y, "batch_size": BATCH, "shuffle": True}
    elif side == "fit tf.data":
        inputs = {"x": pipeline((x, y), autotune=True), "shuffle": False}
    else:
        dataset = kc.datasets.to_dataset(x, y, batch_size=BATCH, shuffle=True, seed=0)
        inputs = {"x": dataset, "shuffle": False}
    start = time.perf_counter()
    model.fit(**inputs, epochs=epochs, verbose=0, callbacks=[Timer()])
    total = time.perf_counter() - start
    # Each epoch besides its steps, the first (tracing) left out; the gaps between epochs
    # (where the previous epoch's iterator is deleted) are spread over the epochs.
    between = (total - sum(epoch_times)) / epochs
    per_epoch = [
        e + between - sum(step_times[i * steps : (i + 1) * steps])
        for i, e in enumerate(epoch_times)
    ]
    return {"overheads": per_epoch[1:], "steps": step_times[steps:]}


def run(side, args):
    flags = ["--epochs", str(args.epochs), "--steps", str(args.steps), "--width", str(args.width)]
    return run_worker(__file__, ["--worker", side, *flags])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every side")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per process")
    parser.add_argument("--steps", type=int, default=5, help="steps (batches of 256) per epoch")
    parser.add_argument("--width", type=int, default=1024, help="the MLP's hidden width")
    parser.add_argument("--quick", action="store_true", help="1 round of 6 epochs")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.steps, args.width)))
        return
    if args.quick:
        args.rounds, args.epochs = 1, 6
    runs = {side: [] for side in SIDES}
    for _ in range(args.rounds):
        for side in runs:
            runs[side].append(run(side, args))
    print(
        f"CPU: {cpu()}; {args.rounds} rounds, fresh processes, "
        f"{args.epochs} epochs of {args.steps} steps"
    )
    print(f"MLP width {args.width}, batch {BATCH}")
    print("| side | step ms (median) | epoch besides its steps, ms (median) | largest |")
    print("|---|---|---|---|")
    for side, results in runs.items():
        overheads = [o for result in results for o in result["overheads"]]
        steps = [s for result in results for s in result["steps"]]
        step = f"{1000 * statistics.median(steps):.1f}" if steps else "-"
        print(
            f"| {side} | {step} | {1000 * statistics.median(overheads):.1f} | "
            f"{1000 * max(overheads):.0f} |"
        )


if __name__ == "__main__":
    main()
