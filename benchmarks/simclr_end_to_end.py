"""End-to-end SimCLR steps/s from raw uint8 images: ours vs TF Similarity 0.17.1 and its augmenter.

Same model on every side: `small_cnn()` (conv 32/64/128/128 with BatchNorm,
three 2x2 max-pools, global average pooling) and the projection head
Dense(512) -> BN -> ReLU -> Dense(128) -> BN of `_steps.towers` (rebuilt in
tf-keras by `_tf_similarity_worker.py`), NT-Xent at temperature 0.1, Adam 1e-3,
B = 256, `--image-size` 32 or 96 (raw images and views of that side). Sides:

- `ours_step`: `kc.ContrastiveModel(augmenter=kc.layers.SimCLRAugmentation(
  image_size=S, value_range=(0, 255)))` fed `kc.datasets.to_dataset` of uint8
  images: both views are made inside the train step;
- `ours_tf_data`: the same augmentation, one vectorized call per view and
  batch in a parallel `Dataset.map` that overlaps the step
  (`_steps.augmented_in_tf_data`), model without augmenter;
- `tfsim`: `tfsim.models.ContrastiveModel(algorithm="simclr")` +
  `SimCLRLoss`, views from its own SimCLR augmentation
  (`simclr_training_augmentation`, what `SimCLRAugmenter(S, S)` maps, at its
  default jitter strength 1.0) per image in `Dataset.map(num_parallel_calls=AUTOTUNE)`,
  in `benchmarks/.venv-tfsim` under `TF_USE_LEGACY_KERAS=1` (created by
  `peer_tf_similarity.peer_python`);
- `tfsim_premade`: TF Similarity on pre-made views: what its augmentation costs it;
- `ours_premade`: ours on fixed pre-made float views (augmentation not timed);
- `floor`: a plain `tf.function` step in a Python loop on the same views;
- `ours_step_bf16` (only with `--sides`): `ours_step` under `mixed_bfloat16`.
  With `--isa avx2` it runs with oneDNN off, on TensorFlow's default kernels,
  as an AVX2-only CPU runs bfloat16 ops (`_cpu.isa_env`).

Both augmenters: random resized crop, flip, colour jitter (strength 1, p 0.8)
and grayscale (p 0.2); ours also blurs half of the images (its default, 3 taps
at 32 px, 9 at 96 px), which TF Similarity's SimCLR augmenter does not do.

Every side runs in a fresh process for every round, the sides interleaved
(A B C ... A B C ...), so no side's idle input pipeline runs while another is
timed. In each process the side is built and traced (2 steps), then runs
WARMUP steps, then the timed steps; a step's time is the interval between the
ends of consecutive steps (a Keras callback, or the loop for the floor), so
input waits count. A round's value is the median of its timed steps; tables
give the median over rounds in steps/s and the min-max of the round medians,
and ratios of the same run (per-round ratios' min-max beside them).
`--curve` prints the per-step curve WARMUP was chosen from.
`--isa avx2` sets `ONEDNN_MAX_CPU_ISA=AVX2` in every float32 process (oneDNN's
kernels as on an AVX2-only CPU; the bfloat16 side: see above), `--isa
avx512_core` sets `ONEDNN_MAX_CPU_ISA=AVX512_CORE` (AVX-512 without VNNI and
BF16, as on a Skylake-SP); `native` leaves the environment as it is.

    python benchmarks/simclr_end_to_end.py                       # 32 px, native, 5 rounds
    python benchmarks/simclr_end_to_end.py --image-size 96 --isa avx2
    python benchmarks/simclr_end_to_end.py --quick               # 2 rounds, fewer steps
    python benchmarks/simclr_end_to_end.py --isa {avx2,avx512_core} --sides ours_step ours_step_bf16
    python benchmarks/simclr_end_to_end.py --curve [--image-size 96]
"""

import argparse
import itertools
import json
import os
import statistics
import sys
import time

from _cpu import ISAS, cpu, isa_env, run_worker

BATCH = 256
# Side names and their labels in the tables.
LABELS = {
    "ours_step": "ours, augmentation in step",
    "ours_tf_data": "ours, augmentation in tf.data",
    "tfsim": "TF Similarity + its augmenter",
    "tfsim_premade": "TF Similarity, pre-made views",
    "ours_premade": "ours, pre-made views",
    "floor": "floor, pre-made views",
    "ours_step_bf16": "ours in step, mixed_bfloat16",
}
SIDES = tuple(LABELS)[:6]  # the default; `ours_step_bf16` only with `--sides`
# `--augmentation`: the augmentation alone, ours with some of its parts off.
AUGMENTATION_SIDES = ("augmentation_ours", "augmentation_tfsim")
AUGMENTATIONS = {
    "crop + flip": {"jitter_rate": 0.0, "grayscale_rate": 0.0, "blur_rate": 0.0},
    "+ colour jitter": {"grayscale_rate": 0.0, "blur_rate": 0.0},
    "+ grayscale": {"blur_rate": 0.0},
    "all (+ blur)": {},
}
# Steps run after the build, then excluded: in the `--curve` run (32 px, native) every side
# was steady from step 8 (ours tf.data 313 ms/step over steps 3-7, then 273-283 ms).
WARMUP = 5
TIMED = {False: {32: 20, 96: 8}, True: {32: 10, 96: 5}}  # by `--quick`, then image size
ROUNDS = {False: 5, True: 2}
CURVE_STEPS = 30
RATIOS = (
    ("ours_step", "tfsim"),
    ("ours_tf_data", "tfsim"),
    ("ours_step", "ours_premade"),
    ("ours_tf_data", "ours_premade"),
    ("ours_premade", "floor"),
    ("ours_premade", "tfsim_premade"),
    ("tfsim", "tfsim_premade"),
    ("ours_step_bf16", "ours_step"),
)


def step_times(callback_class, run):
    """Seconds of each step of `run(callbacks)` (one `fit` call), from end to end."""
    ends = []

    class StepClock(callback_class):
        def on_train_batch_begin(self, batch, logs=None):
            if not ends:
                ends.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    run([StepClock()])
    return [b - a for a, b in itertools.pairwise(ends)]


def peer_side(size, augment):
    """`steps -> per-step seconds` of TF Similarity (in its venv), with its augmenter or not."""
    import tensorflow as tf
    from _tf_similarity_worker import Simclr

    peer = Simclr("small_cnn", BATCH, augment, jit=False, size=size, jitter_strength=1.0)

    def run(steps):
        fit = peer.model.fit
        kwargs = {"steps_per_epoch": steps, "epochs": 1, "verbose": 0}
        return step_times(
            tf.keras.callbacks.Callback, lambda c: fit(peer.data, callbacks=c, **kwargs)
        )

    return run


def floor_side(size):
    import _data
    import _steps

    floor = _steps.simclr_floor("small_cnn", _data.view_pairs(BATCH, size), image_size=size)

    def run(steps):
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            floor.step(next(floor.batches)).numpy()
            times.append(time.perf_counter() - start)
        return times

    return run


def ours_side(side, size):
    import _data
    import _steps
    import keras

    import keras_contrastive as kc

    policy = "mixed_bfloat16" if side.endswith("bf16") else "float32"
    with _steps.global_policy(policy):
        augment = None
        if side != "ours_premade":
            augment = kc.layers.SimCLRAugmentation(image_size=size, value_range=(0, 255), seed=1)
        in_step = side.startswith("ours_step")
        if in_step:
            images = _data.raw_images(BATCH, size)
            data = kc.datasets.to_dataset(images, batch_size=BATCH, drop_remainder=True).repeat()
        elif side == "ours_tf_data":
            data = _steps.augmented_in_tf_data(_data.image_batches(BATCH, size), augment)
        else:
            data = _data.view_pairs(BATCH, size)
        net, head = _steps.towers(image_size=size)
        model = kc.ContrastiveModel(
            encoder=net, projection_head=head, augmenter=augment if in_step else None
        )
        fit = _steps.FitStep(model, data)

    def run(steps):
        kwargs = {"steps_per_epoch": steps, "epochs": 1, "verbose": 0}
        return step_times(
            keras.callbacks.Callback, lambda c: fit.model.fit(fit.data, callbacks=c, **kwargs)
        )

    return run


def augmentation_ms(peer, size, repeats=10):
    """`{what: ms per view of B images}`: ours by option, or TF Similarity's augmentation."""
    import _data
    import tensorflow as tf
    from _timing import median_seconds

    images = tf.data.Dataset.from_tensor_slices(_data.raw_images(BATCH, size)).repeat()
    if peer:
        from _tf_similarity_worker import simclr_training_augmentation

        def augment(image):
            return simclr_training_augmentation(tf.cast(image, "float32") / 255.0, size, size)

        views = iter(images.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH))
        ms = 1000 * median_seconds(lambda: next(views), repeats)
        return {"TF Similarity, per image, tf.data": ms}
    import keras_contrastive as kc

    batch, result = next(iter(images.batch(BATCH))), {}
    for what, options in AUGMENTATIONS.items():
        layer = kc.layers.SimCLRAugmentation(size, value_range=(0, 255), seed=1, **options)
        step = tf.function(layer)
        ms = 1000 * median_seconds(lambda step=step: step(batch).numpy(), repeats)
        result[f"ours, {what}, tf.function"] = ms
    layer = kc.layers.SimCLRAugmentation(size, value_range=(0, 255), seed=1)
    views = iter(images.batch(BATCH).map(layer, num_parallel_calls=tf.data.AUTOTUNE))
    result["ours, all, tf.data"] = 1000 * median_seconds(lambda: next(views), repeats)
    return result


def worker(side, size, steps):
    """`{"build": seconds to build and trace (2 steps), "steps": per-step seconds}`."""
    if side in AUGMENTATION_SIDES:
        return augmentation_ms(side == "augmentation_tfsim", size)
    start = time.perf_counter()
    if side.startswith("tfsim"):
        run = peer_side(size, augment=side == "tfsim")
    elif side == "floor":
        run = floor_side(size)
    else:
        run = ours_side(side, size)
    build = time.perf_counter() - start
    return {"build": build, "steps": run(steps)}


def run_side(side, size, steps, isa, peer_python):
    """Runs `worker(side, size, steps)` in a fresh process; its result."""
    env = isa_env(isa, bfloat16=side.endswith("bf16"))
    python = sys.executable
    if "tfsim" in side:
        env["TF_USE_LEGACY_KERAS"], python = "1", peer_python
    flags = ["--worker", side, "--image-size", str(size), "--steps", str(steps)]
    return run_worker(__file__, flags, python, **env)


def header(args, timing):
    """The CPU and ISA line, then the work and `timing` line, of every table."""
    if args.isa == "native":
        isa = f"native (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})"
    else:
        isa = f"{ISAS[args.isa]} (ONEDNN_MAX_CPU_ISA={ISAS[args.isa]} set)"
    if args.isa == "avx2" and any(side.endswith("bf16") for side in args.sides):
        isa += "; mixed_bfloat16 with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)"
    print(f"CPU: {cpu()}; oneDNN ISA: {isa}")
    quick = "--quick, " if args.quick else ""
    size = f"{args.image_size}x{args.image_size}"
    print(f"SimCLR small_cnn, B = {BATCH}, {size} uint8 images; {quick}{timing}")


def rounds_line(rounds, what):
    return f"{rounds} interleaved rounds, a fresh process per side and round; {what}"


def print_curve(args, results):
    """Per-step ms of one fresh process per side, in blocks of 5 steps (median of a block)."""
    header(args, rounds_line(1, f"build + 2 steps, then {CURVE_STEPS} steps"))
    blocks = range(0, CURVE_STEPS, 5)
    print("| side | build s | " + " | ".join(f"{b + 3}-{b + 7}" for b in blocks) + " |")
    print("|---|---|" + "---|" * len(blocks))
    for side, result in results.items():
        times = result["steps"]
        row = " | ".join(f"{1000 * statistics.median(times[b : b + 5]):.0f}" for b in blocks)
        print(f"| {LABELS[side]} | {result['build']:.1f} | {row} |")
    print("(steps numbered from the first after the 2 build steps; ms per step)")


def print_table(args, rounds, steps, runs):
    """Steps/s per side and the ratios, from each round's median step."""
    header(args, rounds_line(rounds, f"build + 2 steps, {WARMUP} warm-up, {steps} timed steps"))
    rate = {
        side: [1 / statistics.median(r["steps"][WARMUP:]) for r in rs] for side, rs in runs.items()
    }
    print("| side | steps/s | min-max of rounds | images/s |")
    print("|---|---|---|---|")
    for side, values in rate.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"| {LABELS[side]} | {median:.2f} | {spread} | {BATCH * median:.0f} |")
    print("| ratio of steps/s | median | min-max of per-round ratios |")
    print("|---|---|---|")
    for a, b in RATIOS:
        if a in rate and b in rate:
            per_round = [x / y for x, y in zip(rate[a], rate[b], strict=True)]
            median = statistics.median(rate[a]) / statistics.median(rate[b])
            spread = f"{min(per_round):.2f}-{max(per_round):.2f}"
            print(f"| {a} / {b} | {median:.2f} | {spread} |")


def print_augmentation(args, rounds, runs):
    """Ms per view of B images, median and min-max over rounds."""
    header(args, rounds_line(rounds, "2 untimed calls, then the median of 10"))
    print("| augmentation alone, one view of B images | ms | min-max of rounds | images/s |")
    print("|---|---|---|---|")
    for results in runs.values():
        for what in results[0]:
            values = [result[what] for result in results]
            median, spread = statistics.median(values), f"{min(values):.0f}-{max(values):.0f}"
            print(f"| {what} | {median:.0f} | {spread} | {1000 * BATCH / median:.0f} |")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--image-size", type=int, choices=(32, 96), default=32)
    parser.add_argument("--isa", choices=ISAS, default="native", help="oneDNN ISA")
    parser.add_argument("--quick", action="store_true", help="2 rounds, fewer timed steps")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--sides", nargs="+", choices=LABELS, default=SIDES)
    parser.add_argument("--curve", action="store_true", help="per-step curve, 1 round")
    parser.add_argument("--augmentation", action="store_true", help="the augmentation alone")
    parser.add_argument("--worker", choices=(*LABELS, *AUGMENTATION_SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.image_size, args.steps)))
        return
    if args.augmentation:
        args.sides = AUGMENTATION_SIDES
    peer = None
    if any("tfsim" in side for side in args.sides):
        from peer_tf_similarity import peer_python

        peer = peer_python()
    if args.curve:
        steps = CURVE_STEPS
        results = {s: run_side(s, args.image_size, steps, args.isa, peer) for s in args.sides}
        print_curve(args, results)
        return
    rounds = args.rounds or ROUNDS[args.quick]
    steps = TIMED[args.quick][args.image_size]
    runs = {side: [] for side in args.sides}
    for round_ in range(rounds):
        for side in args.sides:
            print(f"round {round_ + 1}/{rounds}: {side}", file=sys.stderr, flush=True)
            runs[side].append(run_side(side, args.image_size, WARMUP + steps, args.isa, peer))
    if args.augmentation:
        print_augmentation(args, rounds, runs)
    else:
        print_table(args, rounds, steps, runs)


if __name__ == "__main__":
    main()
