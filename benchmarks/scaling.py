"""Step time against batch size and against the number of replicas; writes scaling.png.

- Batch size: SimCLR two-view `ContrastiveModel.fit` steps of `small_cnn()`
  (as `train_step.py`) on pre-made view pairs, B = 64 ... 2048, next to the
  NT-Xent loss alone (forward + backward on (B, 2, 128) embeddings): the
  encoder grows as B, the (2B x 2B) similarity matrix as B^2.
- Replicas: the same step at a global batch of 256 under `MirroredStrategy`
  over 1, 2 and 4 logical CPU devices (each count in its own process, because
  logical devices are fixed when TensorFlow starts). On a 2-core machine this
  shows the cost of splitting, gathering and all-reducing, not a speed-up.

    python benchmarks/scaling.py [--rounds 3] [--max-batch 2048]
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

HERE = Path(__file__).resolve().parent
REPLICAS = (1, 2, 4)
GLOBAL_BATCH = 256


def batch_sweep(batches, rounds):
    from _data import view_pairs
    from _steps import FitStep, median_of_rounds, ntxent_ours, simclr_model
    from _timing import LossAlone

    rows = []
    for batch in batches:
        sides = {
            "step": FitStep(simclr_model(), view_pairs(batch)),
            "loss": LossAlone(ntxent_ours, batch),
        }
        seconds = median_of_rounds(sides, 1 if batch >= 1024 else 2, rounds)
        (step, step_cpu), (loss, loss_cpu) = seconds["step"], seconds["loss"]
        rows.append((batch, step_cpu, loss_cpu))
        print(
            f"B {batch:5d}: step {1e3 * step:7.0f} ms (CPU {1e3 * step_cpu:7.0f} ms, "
            f"{1e6 * step_cpu / batch:5.0f} us/image); NT-Xent alone {1e3 * loss:6.1f} ms "
            f"(CPU {1e3 * loss_cpu:6.1f} ms, {100 * loss_cpu / step_cpu:4.1f}% of the step)",
            flush=True,
        )
    return rows


# The benchmark modules are imported inside the functions: the replica worker
# must configure its logical devices before anything initializes TensorFlow's.
def replica_worker(replicas, rounds):
    """Runs in a fresh process: `replicas` logical CPUs, prints the step time as JSON."""
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * replicas,
    )
    from _data import view_pairs
    from _steps import FitStep, median_of_rounds, simclr_model

    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
    with strategy.scope():
        side = FitStep(simclr_model(), view_pairs(GLOBAL_BATCH))
    wall, cpu = median_of_rounds({"step": side}, 2, rounds)["step"]
    print("RESULT " + json.dumps({"wall": wall, "cpu": cpu}), flush=True)


def replica_sweep(rounds):
    rows = []
    for replicas in REPLICAS:
        command = [sys.executable, __file__, "--replica-worker", str(replicas)]
        out = subprocess.run(
            [*command, "--rounds", str(rounds)], capture_output=True, text=True, check=True
        ).stdout
        result = json.loads(out.split("RESULT ", 1)[1])
        rows.append((replicas, result["wall"], result["cpu"]))
        print(
            f"{replicas} replicas, global batch {GLOBAL_BATCH}: {1e3 * result['wall']:6.0f} ms "
            f"per step (CPU {1e3 * result['cpu']:6.0f} ms)",
            flush=True,
        )
    return rows


def plot(batch_rows, replica_rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    batches = [row[0] for row in batch_rows]
    left.loglog(batches, [1e3 * row[1] for row in batch_rows], "o-", label="training step")
    left.loglog(batches, [1e3 * row[2] for row in batch_rows], "s-", label="NT-Xent alone")
    left.set(xlabel="batch size B (2B views)", ylabel="CPU ms per step", title="Batch size")
    left.legend()
    replicas = [row[0] for row in replica_rows]
    right.plot(replicas, [1e3 * row[1] for row in replica_rows], "o-", label="wall")
    right.plot(replicas, [1e3 * row[2] for row in replica_rows], "s-", label="CPU")
    right.set(
        xlabel="replicas (logical CPUs on 2 cores)",
        ylabel="ms per step",
        title=f"MirroredStrategy, global batch {GLOBAL_BATCH}",
        xticks=replicas,
        ylim=(0, None),
    )
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=2048)
    parser.add_argument("--replica-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica_worker:
        replica_worker(args.replica_worker, args.rounds)
        return
    batches = [b for b in (64, 128, 256, 512, 1024, 2048) if b <= args.max_batch]
    print(f"{os.cpu_count()} CPUs; medians of {args.rounds} rounds; the plot shows CPU time")
    batch_rows = batch_sweep(batches, args.rounds)
    replica_rows = replica_sweep(args.rounds)
    plot(batch_rows, replica_rows, HERE / "scaling.png")
    print(f"wrote {HERE / 'scaling.png'}")


if __name__ == "__main__":
    main()
