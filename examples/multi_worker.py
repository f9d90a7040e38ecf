"""SimCLR on digits with `MultiWorkerMirroredStrategy`: two worker processes, one model.

The main demo (`simclr_digits.py`) trained by several processes at once, as on
several machines:

1. This script, run without worker arguments, is the *launcher*: it starts
   `--num-workers` copies of itself on 127.0.0.1, each with its own `TF_CONFIG`
   (the cluster's addresses and the worker's index), and shows worker 0.
2. Each worker builds the model in `MultiWorkerMirroredStrategy.scope()` and
   calls `model.fit`. Every global batch is split between the workers
   (`AutoShardPolicy.DATA`); the NT-Xent loss of each worker scores its rows
   against the embeddings of *all* workers, and the gradients are all-reduced,
   so the workers keep identical weights.
3. Worker 0 (the chief) evaluates the encoder as the main demo does (linear
   probes and kNN beside raw pixels) and writes the training curves to
   `--output-dir`; the other workers wait for it (a barrier: one all-reduce
   that every worker joins), so that all leave the cluster together.

    python examples/multi_worker.py             # two local workers, the demo's settings
    python examples/multi_worker.py --smoke     # a few steps, for tests

On real hosts, run one worker per machine with its own `TF_CONFIG`, e.g. on the
second of two machines:

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 1}}' python examples/multi_worker.py

(with `TF_CONFIG` set, the script is a worker and launches nothing). Any flag of
`simclr_digits.py` (`--epochs`, `--batch-size`, `--dataset`, ...) applies; the
batch size is global. On TPUs use `tf.distribute.TPUStrategy` the same way:
build and compile in its scope, then `fit`.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cluster_parser():
    """This script's own flags; the others are `simclr_digits.py`'s."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags: see simclr_digits.py --help.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--num-workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--worker-index", type=int, help="set by the launcher")
    parser.add_argument("--ports", help="set by the launcher: one local port per worker")
    parser.add_argument(
        "--output-dir", default="outputs/multi_worker", help="where the chief's picture goes"
    )
    return parser


def parse_args(argv=None):
    args, demo_argv = cluster_parser().parse_known_args(argv)
    demo = simclr_digits.parse_args(demo_argv)
    demo.output_dir = args.output_dir
    return args, demo


if __name__ == "__main__":
    cluster_parser().parse_known_args()  # `--help` is answered now, before the slow imports

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import simclr_digits  # noqa: E402  (the main demo, beside this script)
import tensorflow as tf  # noqa: E402


def launch(args, argv):
    """Starts the workers on 127.0.0.1 and waits; worker 0's output is shown."""
    ports = ",".join(str(free_port()) for _ in range(args.num_workers))
    print(f"launching {args.num_workers} workers on 127.0.0.1 ports {ports}", flush=True)
    workers = []
    for index in range(args.num_workers):
        command = [sys.executable, __file__, *argv, "--worker-index", str(index), "--ports", ports]
        output = None if index == 0 else subprocess.DEVNULL
        workers.append(subprocess.Popen(command, stdout=output, stderr=output))
    codes = [worker.wait() for worker in workers]
    if any(codes):
        sys.exit(f"workers exited with codes {codes}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_tf_config(args):
    workers = [f"127.0.0.1:{port}" for port in args.ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": args.worker_index}}
    )


def training_data(x, demo):
    """The global batches, the same on every worker; each worker reads its share."""
    dataset = tf.data.Dataset.from_tensor_slices(x)
    dataset = dataset.shuffle(len(x), seed=demo.seed).batch(demo.batch_size, drop_remainder=True)
    if demo.smoke:
        dataset = dataset.take(2)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def work(demo):
    """One worker: joins the cluster of `TF_CONFIG` and trains; the chief evaluates."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    chief = task["index"] == 0
    keras.utils.set_random_seed(demo.seed)
    (x_train, y_train), (x_test, y_test), _ = simclr_digits.load_data(demo)
    if chief:
        print(f"{strategy.num_replicas_in_sync} replicas, global batch {demo.batch_size}")
    with strategy.scope():
        model = simclr_digits.build_model(demo, x_train.shape[1:])
    start = time.perf_counter()
    history = model.fit(
        training_data(x_train, demo),
        epochs=demo.epochs,
        verbose=2 if chief else 0,
        shuffle=False,  # the dataset shuffles itself (`fit`'s own applies to arrays only)
    )
    if chief:
        print(f"pre-training: {time.perf_counter() - start:.0f} s")
        report(model, history, (x_train, y_train), (x_test, y_test), demo)
    # A worker that exits while the chief still evaluates looks crashed to the
    # cluster (its heartbeats stop, and the chief logs an error): all wait here.
    barrier(strategy)


def report(model, history, train, test, demo):
    """The chief's evaluation, as the main demo's, and its training curves."""
    # Outside the strategy, so that evaluating needs no other worker.
    encoder = keras.models.clone_model(model.encoder)
    encoder.set_weights(model.encoder.get_weights())
    flat = simclr_digits.flatten
    raw = simclr_digits.evaluate(None, flat(*train), flat(*test), demo.smoke)
    simclr = simclr_digits.evaluate(encoder, train, test, demo.smoke)
    simclr_digits.print_table(raw, simclr)
    os.makedirs(demo.output_dir, exist_ok=True)
    path = os.path.join(demo.output_dir, "training_curves.png")
    simclr_digits.plot_curves(history.history, path, ("loss", "contrastive_accuracy"))
    print(f"wrote training_curves.png to {demo.output_dir}")
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in simclr.items()))


def barrier(strategy):
    """Returns once every worker has called it: an all-reduce that each worker joins."""
    strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, demo = parse_args(argv)
    if args.ports is not None:
        set_tf_config(args)
    if "TF_CONFIG" in os.environ:
        work(demo)
    else:
        launch(args, argv)


if __name__ == "__main__":
    main()
