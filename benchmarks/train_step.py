"""The levers of ContrastiveModel's training speed, each measured side by side.

SimCLR two-view training of `small_cnn()` (BatchNorm on) with the SimCLR
projection head Dense(512) -> BN -> ReLU -> Dense(128) -> BN, NT-Xent 0.1,
Adam, 32x32 images (see `_steps.py`). Sections:

- `xla`: `compile(jit_compile=True)` vs off, for ours and for the floor (a
  hand-written `tf.function` step), on pre-made view pairs and with the
  SimCLR augmentation in the step;
- `precision`: the `float32`, `mixed_bfloat16` and `mixed_float16` policies
  (on this machine's CPU; no GPU was lent);
- `pipeline`: the augmentation inside the step vs in `tf.data` (one batched,
  vectorized `SimCLRAugmentation` call per view in `Dataset.map` with
  `num_parallel_calls=AUTOTUNE`, then `prefetch(AUTOTUNE)`);
- `steps_per_execution`: 1 vs 10, augmentation in the step (and at batch 32).

Every section times its sides alternately `--rounds` times and prints medians
of wall and CPU seconds per step, and throughput relative to the first side.

    python benchmarks/train_step.py [--section all] [--rounds 3] [--batch 256]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from _data import image_batches, view_pairs  # noqa: E402
from _steps import (  # noqa: E402
    FitStep,
    augmented_in_tf_data,
    global_policy,
    median_of_rounds,
    simclr_floor,
    simclr_model,
)

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def xla(batch):
    pairs, images = view_pairs(batch), image_batches(batch)
    return {
        "ours, pairs": FitStep(simclr_model(), pairs),
        "ours, pairs, XLA": FitStep(simclr_model(), pairs, jit=True),
        "floor, pairs": simclr_floor("small_cnn", pairs),
        "floor, pairs, XLA": simclr_floor("small_cnn", pairs, jit=True),
        "ours, augment in step": FitStep(simclr_model(in_step_augmentation=True), images),
        "ours, augment in step, XLA": FitStep(
            simclr_model(in_step_augmentation=True), images, jit=True
        ),
    }


def precision(batch):
    sides = {}
    for policy in POLICIES:
        with global_policy(policy):  # built, compiled and traced under the policy
            sides[policy] = FitStep(simclr_model(), view_pairs(batch))
    return sides


def pipeline(batch):
    return {
        "augment in step": FitStep(simclr_model(in_step_augmentation=True), image_batches(batch)),
        "augment in tf.data": FitStep(simclr_model(), augmented_in_tf_data(image_batches(batch))),
    }


def steps_per_execution(batch):
    return {
        f"batch {batch}, steps_per_execution {spe}": FitStep(
            simclr_model(in_step_augmentation=True), image_batches(batch), steps_per_execution=spe
        )
        for spe in (1, 10)
    }


SECTIONS = {
    "xla": (xla, 3),
    "precision": (precision, 3),
    "pipeline": (pipeline, 3),
    "steps_per_execution": (steps_per_execution, 10),
    "steps_per_execution_32": (lambda batch: steps_per_execution(32), 10),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=("all", *SECTIONS), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, batch {args.batch}; throughput relative to the first row")
    for name, (make_sides, steps) in SECTIONS.items():
        if args.section not in ("all", name):
            continue
        seconds = median_of_rounds(make_sides(args.batch), steps, args.rounds)
        (base, base_cpu), *_ = seconds.values()
        print(f"\n[{name}] {'side':<36} {'ms/step':>8} {'CPU ms':>8} {'wall x':>7} {'CPU x':>6}")
        for side, (wall, cpu) in seconds.items():
            print(
                f"{'':<{len(name) + 3}}{side:<36} {1e3 * wall:8.0f} {1e3 * cpu:8.0f} "
                f"{base / wall:7.2f} {base_cpu / cpu:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
