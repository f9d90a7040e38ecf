"""Every self-supervised method of `examples/ssl_methods_digits.py`, over several seeds: one table.

Runs the example once per method and seed (each run in a fresh process, one
after the other, so that their times are comparable), keeps each run's output
in `--log-dir` (a run whose log is complete is not repeated: an interrupted
sweep resumes), and prints a Markdown table of the mean and the sample
standard deviation over seeds of the four metrics of each method, beside raw
pixels (whose figures depend on the seed's label draws only), with the
collapse monitor `embedding_std` and the pre-training time.

    python benchmarks/ssl_methods_digits.py                      # 8 methods x 3 seeds
    python benchmarks/ssl_methods_digits.py --methods simclr dino --seeds 0 1 2 3 4

About 40 minutes on 2 cores for the default sweep (`benchmarks/RESULTS.md`).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "ssl_methods_digits.py")
METHODS = ("simclr", "moco", "barlow_twins", "vicreg", "byol", "simsiam", "nnclr", "dino")
METRICS = ("linear_1_per_class", "linear_3_per_class", "linear_10_per_class", "knn_all_labels")
HEADERS = ("1 label/class", "3 labels/class", "10 labels/class", "kNN, all labels")
# The recipe the README's tables were measured with: the demo's before it moved to width 16 and
# τ = 0.7 (README, "Measured results"). Flags given on the command line come later and win.
RECIPE = ["--width", "32", "--temperature", "0.5"]


def run(method, seed, log_dir, extra):
    """The output of one run of the example, from its log if that run is complete."""
    command = [EXAMPLE, "--method", method, "--seed", str(seed), *RECIPE, *extra]
    return run_logged(command, os.path.join(log_dir, f"{method}.{seed}"))


def run_logged(command, stem):
    """`python *command --output-dir stem`'s output, kept in `stem.log`; a complete log is reused.

    A run is complete when its output has the examples' final `metrics:` line.
    """
    path = stem + ".log"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if "\nmetrics: " in text:
            return text
    command = [sys.executable, *command, "--output-dir", stem]
    print("running", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    text = result.stdout + result.stderr
    with open(path, "w") as f:
        f.write(text)
    if result.returncode:
        raise SystemExit(f"{' '.join(command[1:])} failed (exit {result.returncode}); see {path}")
    return text


def parse(text):
    """`(raw, trained, embedding_std, seconds)` of one run's output."""
    raw, trained = {}, {}
    for name in METRICS:
        row = re.search(rf"^{name}\s+([\d.]+)\s+([\d.]+)$", text, re.M)
        raw[name], trained[name] = float(row.group(1)), float(row.group(2))
    std = re.search(r"^embedding_std\s+-\s+([\d.]+)$", text, re.M)
    seconds = re.search(r"^pre-training: (\d+) s$", text, re.M)
    return raw, trained, float(std.group(1)) if std else None, int(seconds.group(1))


def mean_std(values, digits=1):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--log-dir", default=os.path.join("outputs", "ssl_methods_sweep"))
    args, extra = parser.parse_known_args(argv)  # other flags go to the example
    os.makedirs(args.log_dir, exist_ok=True)
    results = {m: [parse(run(m, s, args.log_dir, extra)) for s in args.seeds] for m in args.methods}

    print(f"\nmean ± std over seeds {args.seeds}; top-1 test accuracy (%)\n")
    print("| features | " + " | ".join(HEADERS) + " | embedding_std | pre-training (s) |")
    print("|---" * (len(HEADERS) + 3) + "|")
    raw = [r[0] for r in next(iter(results.values()))]  # any method's runs: the same draws
    cells = [mean_std([r[name] for r in raw]) for name in METRICS]
    print("| raw pixels | " + " | ".join(cells) + " | - | - |")
    for method, runs in results.items():
        cells = [mean_std([r[1][name] for r in runs]) for name in METRICS]
        stds = [r[2] for r in runs if r[2] is not None]
        std = mean_std(stds, 3) if stds else "-"
        seconds = mean_std([r[3] for r in runs], 0)
        print(f"| {method} | " + " | ".join(cells) + f" | {std} | {seconds} |")


if __name__ == "__main__":
    main()
