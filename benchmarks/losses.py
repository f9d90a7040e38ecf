"""Forward + backward time of NT-Xent, SupCon and CLIP against the bare floor.

The floor is the same similarity matmul(s) and their gradient with nothing
else: for NT-Xent and 2-view SupCon one (2B, D) x (D, 2B) product, for CLIP one
(B, D) x (D, B) product. Every loss and its floor run in the same process, as
`tf.function`, with and without XLA.

    python benchmarks/losses.py            # B in 256, 1024, 4096
    python benchmarks/losses.py --quick    # B in 256, 1024
    python benchmarks/losses.py --hard-negatives   # NT-Xent's tau_plus/beta/decoupled vs plain
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import median_seconds  # noqa: E402

from keras_contrastive import losses  # noqa: E402

DIM = 128


def loss_step(fn, labels, jit):
    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(fn(labels, x))
        return loss, tape.gradient(loss, x)

    return step


def floor_step(rows, jit):
    """The similarity matmul of `rows` x `rows` and its gradient, nothing else."""

    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = tf.reshape(x, (-1, DIM))[:rows]
            loss = tf.reduce_sum(tf.matmul(z, z, transpose_b=True))
        return loss, tape.gradient(loss, x)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip B=4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--hard-negatives",
        action="store_true",
        help="the cost of NT-Xent's hard-negative options against plain NT-Xent, B = 256, 4096",
    )
    args = parser.parse_args()
    if args.hard_negatives:
        return hard_negative_costs(args.repeats)
    batches = (256, 1024) if args.quick else (256, 1024, 4096)
    rng = np.random.default_rng(0)
    print(f"{'loss':8} {'B':>5} {'XLA':>5} {'ours ms':>9} {'floor ms':>9} {'ratio':>6}")
    for batch in batches:
        x = tf.constant(rng.normal(size=(batch, 2, DIM)).astype("float32"))
        labels = tf.constant(rng.integers(0, batch // 8, size=batch).astype("int32"))
        work = {
            "ntxent": (lambda y, v: losses.ntxent_loss(None, v), 2 * batch),
            "supcon": (losses.supcon_loss, 2 * batch),
            "clip": (lambda y, v: losses.clip_loss(None, v), batch),
        }
        for name, (fn, rows) in work.items():
            for jit in (False, True):
                ours = loss_step(fn, labels, jit)
                floor = floor_step(rows, jit)
                t_ours = median_seconds(lambda f=ours, v=x: f(v)[1].numpy(), args.repeats)
                t_floor = median_seconds(lambda f=floor, v=x: f(v)[1].numpy(), args.repeats)
                print(
                    f"{name:8} {batch:5d} {str(jit):>5} {1e3 * t_ours:9.1f} "
                    f"{1e3 * t_floor:9.1f} {t_ours / t_floor:6.2f}",
                    flush=True,
                )


def hard_negative_costs(repeats):
    """NT-Xent's forward + backward with `tau_plus`, `beta`, `decoupled` against plain, one run."""
    rng = np.random.default_rng(0)
    options = {
        "plain": {},
        "beta=1": {"beta": 1.0},
        "tau+=0.1": {"tau_plus": 0.1},
        "beta=1,tau+": {"beta": 1.0, "tau_plus": 0.1},
        "decoupled": {"decoupled": True},
    }
    print(f"{'ntxent':12} {'B':>5} {'XLA':>5} {'ms':>9} {'/ plain':>8} {'/ floor':>8}")
    for batch in (256, 4096):
        x = tf.constant(rng.normal(size=(batch, 2, DIM)).astype("float32"))
        for jit in (False, True):
            floor = floor_step(2 * batch, jit)
            t_floor = median_seconds(lambda f=floor, v=x: f(v)[1].numpy(), repeats)
            plain = None
            for name, kwargs in options.items():
                fn = lambda y, v, kw=kwargs: losses.ntxent_loss(None, v, **kw)  # noqa: E731
                step = loss_step(fn, None, jit)
                t = median_seconds(lambda f=step, v=x: f(v)[1].numpy(), repeats)
                plain = plain or t
                print(
                    f"{name:12} {batch:5d} {str(jit):>5} {1e3 * t:9.1f} {t / plain:8.2f} "
                    f"{t / t_floor:8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
