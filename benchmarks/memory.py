"""Peak memory and time of one loss forward + backward: dense vs chunked.

For NT-Xent and CLIP at each batch size B (D = 128), every configuration runs
in a fresh subprocess, in two modes. "tf.function": the child traces one
forward + backward of the loss as a `tf.function` (no XLA), then runs it once.
"eager": the child runs the same forward + backward eagerly under a
`tf.GradientTape` (a custom training loop, `run_eagerly=True`), after one
eager warm-up call on 64 pairs. Each reports the wall time of that run and its
peak resident set size (`ru_maxrss`, the whole process: Python, TensorFlow and
the inputs included). "over base" is the peak minus the RSS measured just
before the run (after tracing or the warm-up): the memory the loss itself took.

A dense configuration is run only while its estimated peak stays below
`--max-dense-gib`. The estimate is `base + k · rows² · 4 bytes`, where rows is
2B for NT-Xent and B for CLIP and k, the number of float32 `(rows, rows)`
matrices the dense step holds at once, is measured (per mode) on the largest B
run so far; larger ones are reported as "skipped: needs ~N GiB (estimated)" and
not run.

    python benchmarks/memory.py                           # B in 4096, 16384, 32768
    python benchmarks/memory.py --batches 8192 32768      # the eager rows of RESULTS.md
    python benchmarks/memory.py --batches 1024 4096 --modes eager   # a quick run
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

GIB = 2**30
DIM = 128
ROWS_PER_PAIR = {"ntxent": 2, "clip": 1}  # similarity rows (and columns) per pair
MODES = ("tf.function", "eager")
WARM_UP_PAIRS = 64


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child(loss, batch, chunk_size, mode):
    """Runs one configuration and prints its measurements as one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from keras_contrastive import losses

    fn = {"ntxent": losses.ntxent_loss, "clip": losses.clip_loss}[loss]
    x = tf.random.stateless_normal((batch, 2, DIM), seed=(0, 0))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_mean(fn(None, x, chunk_size=chunk_size))
        return value, tape.gradient(value, x)

    if mode == "eager":
        step(x[:WARM_UP_PAIRS])[1].numpy()  # loads the kernels and thread pools
    else:
        step = tf.function(step).get_concrete_function(x)
    base = peak_rss_bytes()
    start = time.perf_counter()
    value, grad = step(x)
    grad.numpy()
    seconds = time.perf_counter() - start
    print(json.dumps({"base": base, "peak": peak_rss_bytes(), "seconds": seconds}))


def run_child(loss, batch, chunk_size, mode):
    command = [sys.executable, __file__, "--child", loss, str(batch), str(chunk_size), mode]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"failed (exit {done.returncode}): {done.stderr.strip()[-200:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[4096, 16384, 32768])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--max-dense-gib", type=float, default=16.0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        loss, batch, chunk_size, mode = args.child
        chunk_size = None if chunk_size == "None" else int(chunk_size)
        return child(loss, int(batch), chunk_size, mode)

    print(f"D = {DIM}, chunk_size = {args.chunk_size}, one forward + backward")
    print("| loss | B | mode | path | peak GiB | over base GiB | seconds |")
    print("|---|---|---|---|---|---|---|")
    notes = []
    for loss, rows_per_pair in ROWS_PER_PAIR.items():
        for mode in args.modes:
            notes += run_mode(loss, rows_per_pair, mode, args)
    print("\n".join(notes))


def run_mode(loss, rows_per_pair, mode, args):
    """Prints the table rows of one loss in one mode; returns the note on its dense k."""
    dense_base, matrices = 0, None  # base RSS and k, from the last dense run
    for batch in sorted(args.batches):
        matrix_bytes = (rows_per_pair * batch) ** 2 * 4
        results = {}
        for path, chunk_size in (("dense", None), ("chunked", args.chunk_size)):
            row = f"| {loss} | {batch} | {mode} | {path} |"
            if path == "dense" and matrices is not None:
                need = dense_base + matrices * matrix_bytes
                if need > args.max_dense_gib * GIB:
                    print(
                        f"{row} skipped: needs ~{need / GIB:.0f} GiB "
                        f"(estimated, {matrices:.1f} × {matrix_bytes / GIB:.1f} GiB) | | |",
                        flush=True,
                    )
                    continue
            result = run_child(loss, batch, chunk_size, mode)
            if "error" in result:
                print(f"{row} {result['error']} | | |", flush=True)
                continue
            results[path] = result
            over = result["peak"] - result["base"]
            if path == "dense":
                dense_base, matrices = result["base"], over / matrix_bytes
            print(
                f"{row} {result['peak'] / GIB:.2f} | {over / GIB:.2f} | {result['seconds']:.1f} |",
                flush=True,
            )
        if len(results) == 2:
            dense, chunked = results["dense"], results["chunked"]
            print(
                f"| {loss} | {batch} | {mode} | chunked / dense | "
                f"{chunked['peak'] / dense['peak']:.2f} | "
                f"{(chunked['peak'] - chunked['base']) / (dense['peak'] - dense['base']):.2f}"
                f" | {chunked['seconds'] / dense['seconds']:.2f} |",
                flush=True,
            )
    if matrices is None:
        return []
    return [f"{loss}, {mode}: the dense step held k = {matrices:.1f} (rows x rows) matrices"]


if __name__ == "__main__":
    main()
