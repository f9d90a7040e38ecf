"""Throughput against TF Similarity 0.17.1 (the peer) and the hand-written floor.

Same work on all sides: SimCLR two-view training, 32x32 images, the same
encoder architecture (`small_cnn()` or the CIFAR ResNet-18, BatchNorm on),
projection head Dense(512) -> BN -> ReLU -> Dense(128) -> BN, NT-Xent at
temperature 0.1, Adam 1e-3. Views are pre-made `(view_1, view_2)` batches
(augmentation not timed), except in the "augmented" rows where every side
applies SimCLR's CIFAR recipe (crop, flip, colour jitter 0.5 with p=0.8,
grayscale p=0.2): ours and the floor in the step, or in tf.data (one
vectorized call per view and batch, in a parallel map), TF Similarity per
image in tf.data as its examples do, and one row under the `mixed_bfloat16` policy
(TF Similarity's projector then ends in a float32 layer: its `SimCLRLoss`
fails on bfloat16 projections). Also: the NT-Xent loss alone (forward +
backward) and a CLIP dual-encoder step (TF Similarity has no CLIP: ours vs floor only).

- ours: `kc.ContrastiveModel.fit` (Keras 3);
- floor: a hand-written `tf.function` step with the same towers, loss and
  optimizer (`_steps.py`);
- peer: `tfsim.models.ContrastiveModel(algorithm="simclr")` with
  `tfsim.losses.SimCLRLoss`, in tf-keras (`TF_USE_LEGACY_KERAS=1`), in a worker
  process running in its own virtual environment, `benchmarks/.venv-tfsim`,
  which this script creates (`python -m venv --system-site-packages`, then
  `pip install tensorflow-similarity==0.17.1`; the main environment is not
  touched).

The sides are timed alternately, `--rounds` times, and the median is kept.
Throughput ratios: `ours/peer` and `ours/floor` (> 1 means ours is faster).
`--large` runs only ResNet-18 at batch 1024, whose step needs ~12 GB: there
each side runs in a process of its own, one after the other, so that only one
holds that memory at a time.

    python benchmarks/peer_tf_similarity.py [--quick | --large] [--rounds 5]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import tensorflow as tf  # noqa: E402
from _data import image_batches, view_pairs  # noqa: E402
from _steps import (  # noqa: E402
    FitStep,
    augmented_in_tf_data,
    clip_fit,
    clip_floor,
    global_policy,
    median_of_rounds,
    ntxent_floor,
    ntxent_ours,
    simclr_floor,
    simclr_model,
)
from _timing import LossAlone  # noqa: E402

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-tfsim"
PEER_PACKAGE = "tensorflow-similarity==0.17.1"
PEER_ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}

# (encoder, batch, timed steps per round) of the SimCLR rows.
QUICK = (("small_cnn", 256, 4),)
FULL = (*QUICK, ("small_cnn", 1024, 3), ("resnet18", 256, 1))
LARGE = (("resnet18", 1024, 1),)  # ~12 GB per side: one process at a time


def peer_python():
    """The venv's Python, with TF Similarity installed (created on first use)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", VENV], check=True)
    probe = [python, "-c", "import tensorflow_similarity"]
    if subprocess.run(probe, env=PEER_ENV, capture_output=True).returncode != 0:
        subprocess.run([python, "-m", "pip", "install", "--quiet", PEER_PACKAGE], check=True)
        subprocess.run(probe, env=PEER_ENV, check=True)
    return python


class Peer:
    """The TF Similarity worker process (`_tf_similarity_worker.py`), one job at a time."""

    def __init__(self):
        python = peer_python()
        self.log = open(VENV / "worker.log", "w")
        self.process = subprocess.Popen(
            [python, HERE / "_tf_similarity_worker.py"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=PEER_ENV,
            text=True,
        )

    def ask(self, **job):
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])
        raise RuntimeError(f"The TF Similarity worker died; see {self.log.name}")

    def close(self):
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


class PeerStep:
    """The worker's current job (`cmd="simclr"` or `"loss"`), timed like `_steps.FitStep`."""

    def __init__(self, peer, **job):
        peer.ask(**job)
        self.peer = peer

    def seconds_per_step(self, steps):
        return tuple(self.peer.ask(cmd="time", steps=steps)["seconds"])


def simclr_sides(
    peer, encoder, batch, augment=False, in_tf_data=False, jit=False, policy="float32"
):
    """Ours, the floor and the peer on the same SimCLR work, built under `policy`.

    With `augment`, ours and the floor augment in the step, or in tf.data
    (vectorized per batch) with `in_tf_data`; the peer always per image in tf.data.
    """
    in_step = augment and not in_tf_data
    data = image_batches(batch) if augment else view_pairs(batch)
    if in_tf_data:
        data = augmented_in_tf_data(data)
    with global_policy(policy):
        model = simclr_model(encoder, in_step_augmentation=in_step)
        sides = {
            "ours": FitStep(model, data, jit=jit),
            "floor": simclr_floor(encoder, data, jit, in_step_augmentation=in_step),
        }
    job = {"encoder": encoder, "batch": batch, "augment": augment, "jit": jit, "policy": policy}
    return {**sides, "peer": PeerStep(peer, cmd="simclr", **job)}


def loss_sides(peer, batch):
    return {
        "ours": LossAlone(ntxent_ours, batch),
        "floor": LossAlone(lambda a, b: ntxent_floor(tf.concat([a, b], 0)), batch),
        "peer": PeerStep(peer, cmd="loss", batch=batch),
    }


def report(work, batch, jit, seconds):
    """One row: ours' throughput, then throughput ratios by wall and by CPU time."""
    (ours, ours_cpu), (floor, floor_cpu) = seconds["ours"], seconds["floor"]
    peer, peer_cpu = seconds.get("peer", (float("nan"),) * 2)
    print(
        f"{work:<28} {batch:5d} {str(jit):>5} {1 / ours:9.2f} {batch / ours:8.0f} "
        f"{1 / floor:9.2f} {1 / peer:9.2f} {floor / ours:10.2f} {peer / ours:9.2f} "
        f"{floor_cpu / ours_cpu:10.2f} {peer_cpu / ours_cpu:9.2f}",
        flush=True,
    )


def one_side(name, encoder, batch, steps, rounds):
    """Prints the `(wall, CPU)` seconds per step of ours or the floor as a JSON line."""
    data = view_pairs(batch)
    side = FitStep(simclr_model(encoder), data) if name == "ours" else simclr_floor(encoder, data)
    print(json.dumps(median_of_rounds({name: side}, steps, rounds)[name]), flush=True)


def isolated_sides(encoder, batch, steps, rounds):
    """`median_of_rounds` of the three sides, each in a process of its own, in turn."""
    seconds = {}
    for name in ("ours", "floor"):
        command = [sys.executable, __file__, "--side", name, "--encoder", encoder]
        command += ["--batch", str(batch), "--steps", str(steps), "--rounds", str(rounds)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        seconds[name] = tuple(json.loads(output.splitlines()[-1]))
    peer = Peer()
    try:
        job = {"encoder": encoder, "batch": batch, "augment": False, "jit": False}
        side = PeerStep(peer, cmd="simclr", policy="float32", **job)
        seconds["peer"] = median_of_rounds({"peer": side}, steps, rounds)["peer"]
    finally:
        peer.close()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CNN at batch 256 only")
    parser.add_argument("--large", action="store_true", help="only ResNet-18 at batch 1024")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--side", choices=("ours", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--encoder", default="resnet18", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # a child of `isolated_sides`
        one_side(args.side, args.encoder, args.batch, args.steps, args.rounds)
        return
    print(f"{os.cpu_count()} CPUs; steps/s, images/s = batch / step time; ratios of throughput")
    print(
        f"{'work':<28} {'B':>5} {'XLA':>5} {'ours st/s':>9} {'ours i/s':>8} {'floor st/s':>9} "
        f"{'peer st/s':>9} {'ours/floor':>10} {'ours/peer':>9} {'cpu:floor':>10} {'cpu:peer':>9}"
    )
    if args.large:
        for encoder, batch, steps in LARGE:
            seconds = isolated_sides(encoder, batch, steps, args.rounds)
            report(f"SimCLR {encoder}", batch, False, seconds)
        return
    peer = Peer()
    try:
        for encoder, batch, steps in QUICK if args.quick else FULL:
            sides = simclr_sides(peer, encoder, batch)
            report(f"SimCLR {encoder}", batch, False, median_of_rounds(sides, steps, args.rounds))
        variants = {
            "augmented": {"augment": True},
            "augmented in tf.data": {"augment": True, "in_tf_data": True},
            "XLA": {"jit": True},
            "mixed_bfloat16": {"policy": "mixed_bfloat16"},
        }
        for label, variant in variants.items():
            sides = simclr_sides(peer, "small_cnn", 256, **variant)
            seconds = median_of_rounds(sides, 4, args.rounds)
            report(f"SimCLR small_cnn {label}", 256, variant.get("jit", False), seconds)
        for jit in (False, True):
            sides = {"ours": clip_fit(256, jit), "floor": clip_floor(256, jit)}
            report("CLIP small_cnn+transformer", 256, jit, median_of_rounds(sides, 4, args.rounds))
        for batch in (1024,) if args.quick else (1024, 4096):
            seconds = median_of_rounds(loss_sides(peer, batch), 3, args.rounds)
            report("NT-Xent loss alone", batch, False, seconds)
    finally:
        peer.close()


if __name__ == "__main__":
    main()
