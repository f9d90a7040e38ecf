"""`fit`'s warm-up: per-step times from the first step, in fresh processes, beside the floor.

SimCLR on pre-made views (`small_cnn`, projection head 512 -> 128, B = 256,
32x32x3, Adam), three sides, each in a fresh process, interleaved over
`--rounds` (A B C A B C ...):

- `fit`: one `model.fit(steps_per_epoch=STEPS)` call;
- `fit x10`: `fit` called STEPS / 10 times for 10 steps each (per-call set-up);
- `floor`: a plain `tf.function` step (forward, NT-Xent, gradient, Adam) in a
  Python loop.

Prints the median step time (ms) of each block of 10 steps, median over
rounds, and the CPU. `--isa avx2` runs every process with
`ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN's kernels as on an AVX2-only CPU; the rest
of TensorFlow's binary does not use AVX-512 anyway).

    python benchmarks/fit_warmup.py                 # 3 rounds, 100 steps
    python benchmarks/fit_warmup.py --isa avx2
    python benchmarks/fit_warmup.py --isa avx2 --autotune off   # the input without autotuning
    python benchmarks/fit_warmup.py --quick         # 1 round, 30 steps
"""

import argparse
import json
import os
import statistics
import sys
import time

from _cpu import cpu, isa_env, run_worker

SIDES = ("fit", "fit x10", "floor")


def worker(side, steps, autotune):
    """Per-step seconds of `side` from its first step, and each `fit` call's other seconds."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _steps
    import keras
    import tensorflow as tf
    from _data import LEARNING_RATE, view_pairs

    data, times, overheads = view_pairs(256), [], []
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        data = data.with_options(options)
    if side == "floor":
        net, head = _steps.towers()
        weights = net.trainable_weights + head.trainable_weights
        optimizer = keras.optimizers.Adam(LEARNING_RATE)
        optimizer.build(weights)

        @tf.function
        def step(batch):
            with tf.GradientTape() as tape:
                loss = _steps.ntxent_floor(head(net(tf.concat(batch, 0), training=True)))
            optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
            return loss

        batches = iter(data)
        for _ in range(steps):
            start = time.perf_counter()
            step(next(batches)).numpy()
            times.append(time.perf_counter() - start)
        return {"steps": times, "overheads": overheads}

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model = _steps.simclr_model()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    views = _steps.one_input(data)
    per_call = steps if side == "fit" else 10
    for _ in range(steps // per_call):
        start, before = time.perf_counter(), len(times)
        model.fit(views, steps_per_epoch=per_call, epochs=1, verbose=0, callbacks=[Timer()])
        # What a call costs besides its steps: set-up, iterator, callbacks, tear-down.
        overheads.append(time.perf_counter() - start - sum(times[before:]))
    return {"steps": times, "overheads": overheads}


def run(side, steps, isa, autotune):
    flags = ["--worker", side, "--steps", str(steps), "--autotune", autotune]
    return run_worker(__file__, flags, **isa_env(isa))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every side")
    parser.add_argument("--steps", type=int, default=100, help="steps per process (x10)")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native", help="oneDNN ISA")
    parser.add_argument(
        "--autotune", choices=("on", "off"), default="on", help="tf.data autotuning of the input"
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 30 steps")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.autotune == "on")))
        return
    if args.quick:
        args.rounds, args.steps = 1, 30
    runs = {side: [] for side in SIDES}
    for _ in range(args.rounds):
        for side in SIDES:
            runs[side].append(run(side, args.steps, args.isa, args.autotune))
    blocks = range(0, args.steps, 10)
    print(
        f"CPU: {cpu()}; oneDNN ISA: {args.isa}; tf.data autotuning {args.autotune}; "
        f"{args.rounds} rounds, fresh processes"
    )
    header = " | ".join(f"{b + 1}-{b + 10}" for b in blocks)
    print(f"| side | first step s | {header} | `fit` call besides steps, ms |")
    print("|---|---|" + "---|" * len(blocks) + "---|")
    for side, results in runs.items():
        times = [result["steps"] for result in results]
        calls = [o for result in results for o in result["overheads"][1:]]  # after the first
        overhead = f"{1000 * statistics.median(calls):.0f}" if calls else "-"
        first = statistics.median(t[0] for t in times)
        block = [[statistics.median(t[b : b + 10]) for t in times] for b in blocks]
        medians = [statistics.median(values) for values in block]
        row = " | ".join(f"{1000 * m:.0f}" for m in medians)
        print(f"| {side} | {first:.2f} | {row} | {overhead} |")


if __name__ == "__main__":
    main()
