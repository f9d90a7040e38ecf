"""LoRA vs full fine-tuning on digits, over several seeds: what is learned, what is forgotten.

Runs `examples/lora_digits.py` (pre-training on digits 0-4, then every
fine-tuning variant on digits 5-9 from the same weights) once per seed, each
in a fresh process, one after the other; keeps each run's output in
`--log-dir` (complete runs are not repeated: an interrupted sweep resumes),
prints a Markdown table of the mean and sample standard deviation over seeds
and draws learned vs retained accuracy, one point per run, in `--plot`.

    python benchmarks/lora_forgetting_digits.py                  # 3 seeds
    python benchmarks/lora_forgetting_digits.py --seeds 0 1 2 3 4 --ranks 1 2 4 8 16

Other flags go to the example (`--finetune-epochs`, `--learning-rate`, ...).
About 15 minutes on 2 cores for 3 seeds (19 at a load of 6–7: `benchmarks/RESULTS.md`).
"""

import argparse
import json
import os
import sys

from ssl_methods_digits import mean_std, run_logged

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")
EXAMPLE = os.path.join(EXAMPLES, "lora_digits.py")
METRICS = ("learned_knn", "learned_linear_1", "retained_knn", "retained_linear_1")
HEADERS = (
    "trained params",
    "learned kNN",
    "learned 1-label",
    "retained kNN",
    "retained 1-label",
    "step ms",
)


def run(seed, log_dir, extra):
    """The rows (one dict per variant) of one run of the example, from its log if complete."""
    text = run_logged([EXAMPLE, "--seed", str(seed), *extra], os.path.join(log_dir, f"seed{seed}"))
    lines = text.splitlines()
    return [
        json.loads(line.removeprefix("variant: ")) for line in lines if line.startswith("variant: ")
    ]


def cell(values, digits=1, sign=False):
    """`mean ± std` of the non-missing values (`+` before a positive mean), `-` if none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    text = mean_std(values, digits)
    return "+" + text if sign and not text.startswith("-") else text


def table(rows):
    """The Markdown table: one line per variant, in the example's order."""
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    lines = ["| variant | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
    for variant in variants:
        runs = [row for row in rows if row["variant"] == variant]
        params = {row["trained_params"] for row in runs}
        params = "-" if params == {None} else " / ".join(f"{p:,}" for p in sorted(params))
        cells = [params, *(cell([r[m] for r in runs]) for m in METRICS)]
        cells.append(cell([r["step_ms"] for r in runs], 0))
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def changes(rows):
    """The Markdown table of each variant's change from the pre-trained encoder of its seed."""
    start = {row["seed"]: row for row in rows if row["variant"] == "pre-trained"}
    variants = [v for v in dict.fromkeys(row["variant"] for row in rows) if v != "pre-trained"]
    lines = ["| variant | " + " | ".join(HEADERS[1:5]) + " |", "|---" * 5 + "|"]
    for variant in variants:
        runs = [row for row in rows if row["variant"] == variant]
        cells = [cell([r[m] - start[r["seed"]][m] for r in runs], sign=True) for m in METRICS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--log-dir", default=os.path.join("outputs", "lora_forgetting_sweep"))
    parser.add_argument("--plot", default=os.path.join(HERE, "forgetting.png"))
    args, extra = parser.parse_known_args(argv)  # other flags go to the example
    if len(args.seeds) < 3:
        print("note: fewer than 3 seeds, the spread is hardly estimated", file=sys.stderr)
    os.makedirs(args.log_dir, exist_ok=True)
    rows = [row for seed in args.seeds for row in run(seed, args.log_dir, extra)]

    print(f"\nmean ± sample std over seeds {args.seeds}; top-1 test accuracy (%)\n")
    print(table(rows))
    print("\nchange from the pre-trained encoder of the same seed (points), mean ± std\n")
    print(changes(rows))
    sys.path.insert(0, EXAMPLES)
    from lora_digits import plot_forgetting  # the example's plot; imports Keras

    seeds = ", ".join(map(str, args.seeds))
    plot_forgetting(rows, args.plot, f"fine-tuning digits 0-4 → 5-9, one point per seed ({seeds})")
    print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
