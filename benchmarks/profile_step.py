"""Where a SimCLR training step spends its time: ours, the floor and TF Similarity.

Builds the three sides of `peer_tf_similarity.py` for one configuration,
records `--steps` steps of each with `tf.profiler` (after the usual warm-up),
and prints the time of the TensorFlow ops that ran, per category, in ms per
step (`_profile.py`). Op times add up across TensorFlow's threads, so with
inter-op parallelism a column can sum to more than the step's wall time.
This is the per-op evidence behind the throughput ratios: what is the same
work on every side (the convolution kernels) and what differs.

    python benchmarks/profile_step.py [--encoder small_cnn] [--batch 256] [--augment]
        [--policy float32] [--steps 3]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from _profile import CATEGORIES, OTHER, op_milliseconds, trace  # noqa: E402
from peer_tf_similarity import Peer, simclr_sides  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=("small_cnn", "resnet18"), default="small_cnn")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--augment", action="store_true", help="SimCLR's CIFAR augmentation")
    parser.add_argument("--policy", default="float32")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    peer = Peer()
    try:
        sides = simclr_sides(
            peer, args.encoder, args.batch, augment=args.augment, policy=args.policy
        )
        milliseconds, steps_ms = {}, {}
        with tempfile.TemporaryDirectory() as logs:
            for name, side in sides.items():
                logdir = Path(logs) / name
                if name == "peer":
                    job = {"cmd": "profile", "steps": args.steps, "logdir": str(logdir)}
                    milliseconds[name] = peer.ask(**job)["milliseconds"]
                else:
                    trace(side, args.steps, logdir)
                    milliseconds[name] = op_milliseconds(logdir, args.steps)
                steps_ms[name] = 1e3 * side.seconds_per_step(args.steps)[0]  # not profiled
    finally:
        peer.close()
    names = list(sides)
    print(
        f"SimCLR {args.encoder}, batch {args.batch}, augment={args.augment}, {args.policy}; "
        f"op time in ms per step ({args.steps} profiled steps)"
    )
    print(f"{'category':<42}" + "".join(f"{name:>10}" for name in names) + "   ours/peer")
    rows = [name for name, _ in CATEGORIES] + [OTHER]
    totals = {name: sum(milliseconds[name].values()) for name in names}
    for row in rows + ["all ops", "step wall time"]:
        if row == "all ops":
            values = totals
        elif row == "step wall time":
            values = steps_ms
        else:
            values = {name: milliseconds[name].get(row, 0.0) for name in names}
        ratio = values["ours"] / values["peer"] if values["peer"] else float("nan")
        print(f"{row:<42}" + "".join(f"{values[n]:10.1f}" for n in names) + f"{ratio:12.2f}")
    conv = {name: milliseconds[name].get("convolution", 0.0) / totals[name] for name in names}
    print("convolution share of all op time: " + ", ".join(f"{n} {conv[n]:.0%}" for n in names))


if __name__ == "__main__":
    main()
