"""Triplet mining: time and peak memory of the (B, B, B) formula vs the sorted O(B²) one.

For `mining="semi_hard"` and `"batch_all"` at each batch size B (D = 64, 10
classes), every configuration runs in a fresh subprocess. The child traces one
forward + backward of `kc.losses.TripletLoss(mining=...)` as a `tf.function`
(XLA with `--jit`), runs it once to warm up, and reports the median wall time of
`--repeats` runs and the peak resident set size (`ru_maxrss`, the whole process).
"over base" is the peak minus the RSS measured after tracing: the memory the
step itself took.

"cubic" is the previous implementation, copied below (`cubic_batch_all`,
`cubic_semi_hard`: every triplet materialized) and put in `TripletLoss`'s
mining table in its child; "sorted" is the library's (`kc.ops.mining`). A cubic
configuration is run only while its estimated peak, `base + k · B³ · 4 bytes`
with k measured on the largest cubic run so far, stays below `--max-cubic-gib`.

    python benchmarks/triplet_mining.py                      # B in 128, 256, 512, 1024
    python benchmarks/triplet_mining.py --jit --batches 256 1024
"""

import argparse
import importlib
import json
import os
import subprocess
import sys

from memory import GIB, peak_rss_bytes

DIM = 64
NUM_CLASSES = 10
MARGIN = 1.0
_BIG = 1e30


def cubic_batch_all(labels, distances, margin):
    """The previous `batch_all_triplet_values`: a `(B, B, B)` tensor of triplet losses."""
    from keras import ops

    from keras_contrastive.ops.masks import label_mask, positive_mask
    from keras_contrastive.ops.mining import _spread

    pos = positive_mask(labels)
    neg = ops.logical_not(label_mask(labels))
    valid = ops.logical_and(pos[:, :, None], neg[:, None, :])
    losses = distances[:, :, None] - distances[:, None, :] + margin
    losses = ops.where(valid, ops.maximum(losses, 0.0), 0.0)
    num_positive = ops.sum(ops.cast(losses > 1e-16, losses.dtype))
    return _spread(ops.sum(losses, axis=(1, 2)), num_positive)


def cubic_semi_hard(labels, distances, margin):
    """The previous `semi_hard_triplet_values`: `(B, B, B)` masks of farther negatives."""
    from keras import ops

    from keras_contrastive.ops.masks import label_mask, positive_mask
    from keras_contrastive.ops.mining import _spread

    pos = positive_mask(labels)
    neg = ops.logical_not(label_mask(labels))
    d_ap = distances[:, :, None]
    d_an = distances[:, None, :]
    semi_hard = ops.logical_and(neg[:, None, :], d_an > d_ap)
    d_an = ops.broadcast_to(d_an, ops.shape(semi_hard))
    closest_semi_hard = ops.min(ops.where(semi_hard, d_an, _BIG), axis=2)
    farthest = ops.max(ops.where(neg, distances, -_BIG), axis=1)[:, None]
    chosen = ops.where(ops.any(semi_hard, axis=2), closest_semi_hard, farthest)
    valid = ops.logical_and(pos, ops.any(neg, axis=1)[:, None])
    losses = ops.where(valid, ops.maximum(distances - chosen + margin, 0.0), 0.0)
    return _spread(ops.sum(losses, axis=1), ops.sum(ops.cast(valid, "int32")))


CUBIC = {"semi_hard": cubic_semi_hard, "batch_all": cubic_batch_all}


def child(mining, path, batch, jit, repeats):
    """Runs one configuration and prints its measurements as one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from _timing import median_seconds

    import keras_contrastive as kc

    if path == "cubic":  # the module, not the `kc.losses.triplet_loss` function
        module = importlib.import_module("keras_contrastive.losses.triplet_loss")
        module.MINING[mining] = CUBIC[mining]
    loss = kc.losses.TripletLoss(margin=MARGIN, mining=mining)
    labels = tf.random.stateless_uniform((batch,), (0, 1), 0, NUM_CLASSES, dtype="int32")
    x = tf.random.stateless_normal((batch, DIM), seed=(0, 0))

    @tf.function(jit_compile=jit)
    def step(labels, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(labels, x)
        return value, tape.gradient(value, x)

    concrete = step.get_concrete_function(labels, x)
    base = peak_rss_bytes()
    seconds = median_seconds(lambda: concrete(labels, x)[1].numpy(), repeats, warmup=1)
    value = float(concrete(labels, x)[0])
    print(json.dumps({"base": base, "peak": peak_rss_bytes(), "seconds": seconds, "value": value}))


def run_child(mining, path, batch, jit, repeats):
    command = [sys.executable, __file__, "--child", mining, path, str(batch), str(int(jit))]
    done = subprocess.run(command + ["--repeats", str(repeats)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"failed (exit {done.returncode}): {done.stderr.strip()[-200:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(*cells):
    print("| " + " | ".join(str(cell) for cell in cells) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA")
    parser.add_argument("--max-cubic-gib", type=float, default=8.0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mining, path, batch, jit = args.child
        return child(mining, path, int(batch), jit == "1", args.repeats)

    print(
        f"D = {DIM}, {NUM_CLASSES} classes, margin = {MARGIN}, one forward + backward of "
        f"TripletLoss, tf.function{' with XLA' if args.jit else ''}, median of {args.repeats}"
    )
    row("mining", "B", "path", "ms", "peak GiB", "over base GiB")
    row(*["---"] * 6)
    notes = []
    for mining in CUBIC:
        cubic_base, matrices = 0, None  # base RSS and k, from the last cubic run
        for batch in sorted(args.batches):
            cube_bytes = batch**3 * 4
            results = {}
            for path in ("cubic", "sorted"):
                if path == "cubic" and matrices is not None:
                    need = cubic_base + matrices * cube_bytes
                    if need > args.max_cubic_gib * GIB:
                        row(
                            mining,
                            batch,
                            "cubic",
                            f"skipped: needs ~{need / GIB:.0f} GiB (estimated, "
                            f"{matrices:.1f} × {cube_bytes / GIB:.1f} GiB)",
                            "",
                            "",
                        )
                        continue
                result = run_child(mining, path, batch, args.jit, args.repeats)
                if "error" in result:
                    row(mining, batch, path, result["error"], "", "")
                    continue
                results[path] = result
                over = result["peak"] - result["base"]
                if path == "cubic":
                    cubic_base, matrices = result["base"], over / cube_bytes
                row(
                    mining,
                    batch,
                    path,
                    f"{result['seconds'] * 1e3:.0f}",
                    f"{result['peak'] / GIB:.2f}",
                    f"{over / GIB:.2f}",
                )
            if len(results) == 2:
                cubic, fast = results["cubic"], results["sorted"]
                row(
                    mining,
                    batch,
                    "sorted / cubic",
                    f"{fast['seconds'] / cubic['seconds']:.2f}",
                    f"{fast['peak'] / cubic['peak']:.2f}",
                    f"{(fast['peak'] - fast['base']) / (cubic['peak'] - cubic['base']):.3f}",
                )
                gap = abs(fast["value"] - cubic["value"]) / abs(cubic["value"])
                notes.append(f"{mining}, B = {batch}: losses agree to {gap:.1e} (relative)")
        if matrices is not None:
            notes.append(f"{mining}: the cubic step held k = {matrices:.1f} (B, B, B) float32s")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
