"""CLIP on digits with and without mined hard negatives (ANCE): zero-shot and Recall@1.

Runs `examples/clip_digits.py` (the example's settings) once per variant and
seed, each in a fresh process, one after the other; keeps each run's output in
`--log-dir` (complete runs are not repeated) and prints a Markdown table of
the mean and sample standard deviation over seeds.

    python benchmarks/mined_negatives_clip_digits.py                # 5 variants x 3 seeds
    python benchmarks/mined_negatives_clip_digits.py --seeds 0 1 2 3 4

About 15 minutes on 2 cores (`benchmarks/RESULTS.md`).
"""

import argparse
import os
import re

from ssl_methods_digits import mean_std, run_logged

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "clip_digits.py")
VARIANTS = {
    "in-batch negatives": [],
    "+ 4 mined, refreshed every 5 epochs": ["--hard-negatives", "4", "--refresh-every", "5"],
    "+ 4 mined, refreshed every epoch": ["--hard-negatives", "4", "--refresh-every", "1"],
    # A short budget, where the task is not yet saturated.
    "in-batch negatives, 5 epochs": ["--epochs", "5"],
    "+ 4 mined, every epoch, 5 epochs": [
        "--epochs",
        "5",
        "--hard-negatives",
        "4",
        "--refresh-every",
        "1",
    ],
}
METRICS = {
    "zero_shot_top1": "zero-shot top-1 (%)",
    "image_to_text_recall@1": "image→text R@1 (%)",
    "text_to_image_recall@1": "text→image R@1 (%)",
}


def run(name, flags, seed, log_dir):
    """The output of one run of the example, from its log if that run is complete."""
    slug = "".join(c if c.isalnum() else "_" for c in name)
    command = [EXAMPLE, *flags, "--seed", str(seed)]
    return run_logged(command, os.path.join(log_dir, f"{slug}.{seed}"))


def parse(text):
    """`({metric: percent}, training seconds)` of one run's output."""
    values = {m: 100 * float(re.search(rf"^{m}\s+([\d.]+)$", text, re.M).group(1)) for m in METRICS}
    return values, int(re.search(r"^training: (\d+) s$", text, re.M).group(1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--log-dir", default=os.path.join("outputs", "mined_negatives_sweep"))
    args = parser.parse_args(argv)
    os.makedirs(args.log_dir, exist_ok=True)
    print(f"\nmean ± std over seeds {args.seeds}\n")
    print("| negatives | " + " | ".join(METRICS.values()) + " | training (s) |")
    print("|---" * (len(METRICS) + 2) + "|")
    for name, flags in VARIANTS.items():
        runs = [parse(run(name, flags, seed, args.log_dir)) for seed in args.seeds]
        cells = [mean_std([r[0][m] for r in runs]) for m in METRICS]
        seconds = mean_std([r[1] for r in runs], 0)
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds} |", flush=True)


if __name__ == "__main__":
    main()
