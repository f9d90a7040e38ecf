"""SimCLR on digits with hard negatives: NT-Xent, debiased, hardness-weighted and decoupled.

Runs `examples/simclr_digits.py` (the recipe of `ssl_methods_digits.RECIPE`) once per variant and
seed, each in a fresh process, one after the other; keeps each run's output in
`--log-dir` (complete runs are not repeated) and prints a Markdown table of
the mean and sample standard deviation over seeds, as
`benchmarks/ssl_methods_digits.py` does for the methods.

    python benchmarks/hard_negatives_digits.py                 # 5 variants x 3 seeds
    python benchmarks/hard_negatives_digits.py --seeds 0 1 2 3 4

About 25 minutes on 2 cores (`benchmarks/RESULTS.md`).
"""

import argparse
import os

from ssl_methods_digits import HEADERS, METRICS, RECIPE, mean_std, parse, run_logged

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "simclr_digits.py")
# name -> the demo's flags (Chuang et al. 2020: τ⁺ = 0.1; Robinson et al. 2021: β = 0.5, 1).
VARIANTS = {
    "NT-Xent": [],
    "debiased, τ⁺ = 0.1": ["--tau-plus", "0.1"],
    "hard, β = 0.5": ["--beta", "0.5"],
    "hard, β = 1, τ⁺ = 0.1": ["--beta", "1", "--tau-plus", "0.1"],
    "decoupled (DCL)": ["--decoupled"],
}


def run(name, flags, seed, log_dir):
    """The output of one run of the demo, from its log if that run is complete."""
    slug = "".join(c if c.isalnum() else "_" for c in name)
    command = [EXAMPLE, *RECIPE, *flags, "--seed", str(seed)]
    return run_logged(command, os.path.join(log_dir, f"{slug}.{seed}"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--log-dir", default=os.path.join("outputs", "hard_negatives_sweep"))
    args = parser.parse_args(argv)
    os.makedirs(args.log_dir, exist_ok=True)
    results = {
        name: [parse(run(name, flags, seed, args.log_dir)) for seed in args.seeds]
        for name, flags in VARIANTS.items()
    }
    print(f"\nmean ± std over seeds {args.seeds}; top-1 test accuracy (%)\n")
    print("| loss | " + " | ".join(HEADERS) + " | pre-training (s) |")
    print("|---" * (len(HEADERS) + 2) + "|")
    raw = [r[0] for r in next(iter(results.values()))]
    print("| raw pixels | " + " | ".join(mean_std([r[m] for r in raw]) for m in METRICS) + " | - |")
    for name, runs in results.items():
        cells = [mean_std([r[1][m] for r in runs]) for m in METRICS]
        seconds = mean_std([r[3] for r in runs], 0)
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds} |")


if __name__ == "__main__":
    main()
