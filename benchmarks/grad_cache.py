"""Time and peak memory of a ContrastiveModel train step with and without gradient caching.

Two-view SimCLR step (small CNN encoder without BatchNorm, width 32, 32x32
views given as `(view_1, view_2)` pairs so that augmentation is not timed,
ProjectionHead(128 -> 128), NT-Xent, SGD) at one large batch, for several
`gradient_cache_chunks`. Each configuration runs in a fresh subprocess, so its
peak resident memory (`ru_maxrss`) is its own; "step memory" is that peak
minus the resident memory just before the first step (model, optimizer and
data already built), i.e. what the step itself needs. The configurations run
in turn, `--rounds` times, so that a change of machine load hits all of them;
each row gives the fastest round's median step time and the largest peak.
Rows print side by side with ratios to the plain step (`chunks = 1`).

    python benchmarks/grad_cache.py [--batch 2048] [--chunks 1 4 16] [--steps 3] [--rounds 2]
        [--loss-chunk-size N]   # also chunk the loss (the other half of the memory)
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def current_rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(batch, chunks, steps, loss_chunk_size):
    """One configuration, in this process: prints a JSON line."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_contrastive as kc

    keras.utils.set_random_seed(0)
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(32, 32, 3), width=32, batch_norm=False),
        projection_head=kc.layers.ProjectionHead(
            hidden_dims=(128,), output_dim=128, batch_norm=False
        ),
        gradient_cache_chunks=chunks,
    )
    loss = kc.losses.NTXentLoss(0.1, chunk_size=loss_chunk_size)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    rng = np.random.default_rng(0)
    views = tuple(rng.uniform(size=(batch, 32, 32, 3)).astype("float32") for _ in range(2))
    data = tf.data.Dataset.from_tensors((views,)).repeat()  # one input: ((v1, v2),)
    before = current_rss_mib()
    start = time.perf_counter()
    first = model.fit(data, steps_per_epoch=1, epochs=1, verbose=0).history["loss"][0]
    first_seconds = time.perf_counter() - start  # includes tracing
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "chunks": chunks,
                "first_loss": first,
                "first_step_s": first_seconds,
                "step_s": float(np.median(times)),
                "before_mib": before,
                "peak_mib": peak,
            }
        )
    )


def run_configuration(batch, chunks, steps, loss_chunk_size):
    command = [sys.executable, __file__, "--worker", "--batch", str(batch)]
    command += ["--chunks", str(chunks), "--steps", str(steps)]
    if loss_chunk_size is not None:
        command += ["--loss-chunk-size", str(loss_chunk_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"chunks": chunks, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def best(results):
    """One configuration over rounds: the fastest step time, the largest peak memory."""
    done = [r for r in results if "error" not in r]
    if not done:
        return results[0]
    row = min(done, key=lambda r: r["step_s"])
    worst = max(done, key=lambda r: r["peak_mib"] - r["before_mib"])
    return {**row, "peak_mib": worst["peak_mib"], "before_mib": worst["before_mib"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--loss-chunk-size", type=int, default=None, help="NTXentLoss(chunk_size=...)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        measure(args.batch, args.chunks[0], args.steps, args.loss_chunk_size)
        return
    runs = [
        [
            run_configuration(args.batch, chunks, args.steps, args.loss_chunk_size)
            for chunks in args.chunks
        ]
        for _ in range(args.rounds)
    ]
    rows = [best(list(results)) for results in zip(*runs, strict=True)]
    plain = next((r for r in rows if r.get("chunks") == 1 and "error" not in r), None)
    print(
        f"batch {args.batch} (two views each): median of {args.steps} steps after the first, "
        f"fastest of {args.rounds} rounds; NTXentLoss(chunk_size={args.loss_chunk_size})"
    )
    print(
        "| gradient_cache_chunks | step s | step / plain | peak RSS MiB | step memory MiB "
        "| step memory / plain | first-step loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['chunks']} | failed: {row['error']} | | | | | |")
            continue
        memory = row["peak_mib"] - row["before_mib"]
        if plain is None:
            time_ratio = memory_ratio = float("nan")
        else:
            time_ratio = row["step_s"] / plain["step_s"]
            memory_ratio = memory / (plain["peak_mib"] - plain["before_mib"])
        print(
            f"| {row['chunks']} | {row['step_s']:.2f} | {time_ratio:.2f} | {row['peak_mib']:.0f} "
            f"| {memory:.0f} | {memory_ratio:.2f} | {row['first_loss']:.6f} |"
        )


if __name__ == "__main__":
    main()
