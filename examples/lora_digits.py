"""Does LoRA forget less? A SupCon encoder of digits 0-4 fine-tuned on digits 5-9, six ways.

LoRA (Hu et al. 2021) freezes the pretrained weights and learns a low-rank
update of each layer; Biderman et al. (2024) measured that it learns less of
the new domain than full fine-tuning and keeps more of the old one. This
script measures the same trade-off on `kc.datasets.digits()` (its fixed 70/30
split, cut in two by label):

1. Pre-training: `small_cnn` and a projection head trained with `SupConLoss`
   on the training images of digits 0-4 (`supcon_digits.py`'s settings: two
   SimCLR views per image, Adam 2e-3, batch 256, τ = 0.1).
2. Fine-tuning on the training images of digits 5-9, SupCon again, from the
   SAME pretrained encoder and head (their weights copied into a fresh model
   for each variant), with the same epochs, batches, optimizer and seed:
   - `full`: every encoder weight trains, batch normalization included;
   - `full, BN frozen`: every conv kernel trains, batch normalization runs in
     inference mode with the pretrained statistics (LoRA's rule below);
   - `LoRA r=R` for each `--ranks`: `kc.lora.enable_lora(encoder, R)` on every
     conv layer (it freezes everything else, batch normalization included);
   - `frozen`: `encoder.trainable = False`, only the projection head trains.
   The head always trains; it is dropped for evaluation.
3. Evaluation of each encoder (and of the pre-trained one): kNN (k = 20,
   cosine, every training label) and a linear probe with 1 label per class
   (mean of 5 draws), on the test images of digits 5-9 (*learned*) and of
   digits 0-4 (*retained*), each with the training images of its own digits;
   beside them the encoder parameters that trained and the median step time.

LoRA freezes batch normalization, full fine-tuning does not: the `full, BN
frozen` row separates what the low rank does from what frozen statistics do.

    python examples/lora_digits.py                       # the demo: 4-6 minutes on 2 cores
    python examples/lora_digits.py --ranks 1 16 --seed 3
    python examples/lora_digits.py --smoke               # a few steps, for tests

Each variant's results are printed as a `variant: {JSON}` line (and written
to `--json PATH`); `benchmarks/lora_forgetting_digits.py` runs this script
over several seeds.
"""

import argparse
import json
import os
import re
import time

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OLD_DIGITS, NEW_DIGITS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
METRICS = ("learned_knn", "learned_linear_1", "retained_knn", "retained_linear_1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output-dir", default="outputs/lora_digits", help="where the plot goes")
    parser.add_argument("--json", help="also write the results of every variant to this file")
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=60, help="pre-training epochs")
    parser.add_argument(
        "--finetune-epochs", type=int, default=40, help="fine-tuning epochs of every variant"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    parser.add_argument("--temperature", type=float, default=0.1, help="SupCon's τ")
    parser.add_argument(
        "--ranks", type=int, nargs="+", help="LoRA ranks (default: 2 4 8; 2 with --smoke)"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the weights, views and probes")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (2 steps per stage, one LoRA rank, few probe steps) to check the script",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.finetune_epochs, args.width = 2, 2, 8
    if args.ranks is None:
        args.ranks = [2] if args.smoke else [2, 4, 8]
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import keras_contrastive as kc  # noqa: E402

# Each linear probe trains a fresh classifier, which TensorFlow reports as "retracing".
tf.get_logger().setLevel("ERROR")


def split_by_digit(data):
    """`{"old": ..., "new": ...}`: the `(x, y)` pairs of `data` with digits 0-4 and 5-9."""
    x, y = data
    return {
        name: (x[np.isin(y, digits)], y[np.isin(y, digits)])
        for name, digits in (("old", OLD_DIGITS), ("new", NEW_DIGITS))
    }


def build_model(args, input_shape, encoder, head):
    """`supcon_digits.py`'s SupCon model around `encoder` and `head`, compiled afresh."""
    model = kc.ContrastiveModel(
        encoder=encoder,
        projection_head=head,
        augmenter=kc.layers.SimCLRAugmentation(
            image_size=input_shape[:2],
            value_range=(0, 1),
            crop_area=(0.3, 1.0),
            flip_rate=0.0,  # a mirrored digit is another glyph
            rotation=10.0,
            seed=args.seed,
        ),
        seed=args.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=kc.losses.SupConLoss(temperature=args.temperature),
    )
    return model


class StepTimes(keras.callbacks.Callback):
    """The wall time of every training step, in seconds."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    def median_ms(self):
        """The median step time without the first step (which traces the step function)."""
        return 1000 * float(np.median(self.seconds[1:] or self.seconds))


def train(model, args, data, epochs):
    """`model.fit` on `data` for `epochs`; the median step time in ms."""
    keras.utils.set_random_seed(args.seed)  # the same batches and views for every variant
    times = StepTimes()
    model.fit(
        kc.datasets.to_dataset(*data, batch_size=args.batch_size, shuffle=True, seed=args.seed),
        epochs=epochs,
        steps_per_epoch=1 if args.smoke else None,
        shuffle=False,  # the dataset shuffles itself
        callbacks=[times],
        verbose=2,
    )
    return times.median_ms()


def pretrain(args, old_train, input_shape):
    """The encoder and head after SupCon pre-training on digits 0-4."""
    encoder = kc.encoders.small_cnn(input_shape=input_shape, width=args.width)
    head = kc.layers.ProjectionHead(hidden_dims=(256,), output_dim=64)
    start = time.perf_counter()
    train(build_model(args, input_shape, encoder, head), args, old_train, args.epochs)
    print(f"pre-training: {time.perf_counter() - start:.0f} s")
    return encoder, head


def copy_of(args, input_shape, encoder, head):
    """A fresh encoder and head holding the weights of `encoder` and `head`."""
    new_encoder = kc.encoders.small_cnn(input_shape=input_shape, width=args.width)
    new_encoder.set_weights(encoder.get_weights())
    new_head = kc.layers.ProjectionHead(hidden_dims=(256,), output_dim=64)
    new_head.build(encoder.output.shape)
    new_head.set_weights(head.get_weights())
    return new_encoder, new_head


def prepare(variant, encoder):
    """Sets which weights of `encoder` train for `variant` (`"full"`, `"LoRA r=4"`, ...)."""
    if variant == "full, BN frozen":
        for layer in encoder.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras runs it in inference mode
    elif variant.startswith("LoRA r="):
        kc.lora.enable_lora(encoder, int(variant.removeprefix("LoRA r=")))
    elif variant == "frozen":
        encoder.trainable = False
    elif variant != "full":
        raise ValueError(f"Unknown variant: {variant!r}")


def trained_parameters(encoder):
    """The number of encoder weights the optimizer updates."""
    return int(sum(np.prod(weight.shape) for weight in encoder.trainable_weights))


def embed(encoder, images):
    """The representations of `images` (inference mode) as a NumPy array."""
    return keras.ops.convert_to_numpy(encoder(images, training=False))


def evaluate(encoder, halves, smoke):
    """kNN and 1-label linear-probe top-1 (%) on the test images of each half."""
    row = {}
    for metric, half in (("learned", "new"), ("retained", "old")):
        (x_train, y_train), (x_test, y_test) = halves["train"][half], halves["test"][half]
        f_train, f_test = embed(encoder, x_train), embed(encoder, x_test)
        first = y_train.min()
        y_train, y_test = y_train - first, y_test - first  # classes 0..4
        knn = kc.evaluation.knn_accuracy(f_train, y_train, f_test, y_test, k=20)
        probe = kc.evaluation.linear_probe(
            None,
            (f_train, y_train),
            (f_test, y_test),
            labels_per_class=1,
            num_trials=1 if smoke else 5,
            steps=20 if smoke else 500,
        )
        row[f"{metric}_knn"] = 100 * knn["top1"]
        row[f"{metric}_linear_1"] = 100 * probe["top1"]
    return row


def merge_error(encoder, images):
    """Merges the LoRA factors into the kernels; the largest change of an embedding."""
    before = embed(encoder, images)
    kc.lora.merge_lora(encoder)
    return float(np.max(np.abs(embed(encoder, images) - before)))


def finetune(args, variant, pretrained, halves, input_shape):
    """One variant fine-tuned on digits 5-9 from the pretrained weights, evaluated: a row."""
    encoder, head = copy_of(args, input_shape, *pretrained)
    prepare(variant, encoder)
    row = {"variant": variant, "seed": args.seed, "trained_params": trained_parameters(encoder)}
    model = build_model(args, input_shape, encoder, head)
    print(f"\nfine-tuning: {variant}, {row['trained_params']:,} encoder parameters train")
    row["step_ms"] = train(model, args, halves["train"]["new"], args.finetune_epochs)
    row.update(evaluate(encoder, halves, args.smoke))
    if variant.startswith("LoRA"):
        row["merge_max_abs_diff"] = merge_error(encoder, halves["test"]["new"][0])
    return row


def slug(variant):
    """`"LoRA r=4"` -> `"lora_r_4"`, `"full, BN frozen"` -> `"full_bn_frozen"`."""
    return re.sub(r"\W+", "_", variant.lower())


def print_table(rows):
    print(
        f"\n{'variant':<18}{'trained':>10}{'learned':>9}{'learned':>9}{'retained':>10}"
        f"{'retained':>10}{'step':>8}\n{'':<18}{'params':>10}{'kNN':>9}{'1-label':>9}"
        f"{'kNN':>10}{'1-label':>10}{'ms':>8}"
    )
    for row in rows:
        params = "-" if row["trained_params"] is None else f"{row['trained_params']:,}"
        step = "-" if row["step_ms"] is None else f"{row['step_ms']:.0f}"
        cells = "".join(f"{row[m]:>{9 if m.startswith('l') else 10}.1f}" for m in METRICS)
        print(f"{row['variant']:<18}{params:>10}{cells}{step:>8}")


def plot_forgetting(rows, path, title):
    """Learned vs retained accuracy (kNN; 1-label probe): a point per row, a marker per variant.

    The pre-trained encoder is the hollow circle: where every variant starts.
    """
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    probes = (("knn", "kNN (k = 20), every label"), ("linear_1", "linear probe, 1 label per class"))
    for ax, (probe, label) in zip(axes, probes, strict=True):
        for i, variant in enumerate(variants):
            runs = [row for row in rows if row["variant"] == variant]
            style = {"marker": "o^sDvP*Xh<>"[i % 11], "color": f"C{i}", "alpha": 0.8}
            if variant == "pre-trained":
                style = {"marker": "o", "facecolors": "none", "edgecolors": "black"}
            ax.scatter(
                [row[f"learned_{probe}"] for row in runs],
                [row[f"retained_{probe}"] for row in runs],
                s=110 if variant == "pre-trained" else 60,
                label=variant,
                **style,
            )
        ax.set_xlabel("learned: digits 5-9, test accuracy (%)")
        ax.set_ylabel("retained: digits 0-4, test accuracy (%)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    train_data, test_data, _ = kc.datasets.digits(image_size=args.image_size, channels=1)
    halves = {"train": split_by_digit(train_data), "test": split_by_digit(test_data)}
    input_shape = train_data[0].shape[1:]
    print(
        "digits: "
        + ", ".join(
            f"{len(halves[s][h][0])} {s} images of {d}"
            for s in ("train", "test")
            for h, d in (("old", "0-4"), ("new", "5-9"))
        )
        + f", shape {input_shape}"
    )

    start = time.perf_counter()
    print("\nSupCon pre-training on digits 0-4")
    pretrained = pretrain(args, halves["train"]["old"], input_shape)
    row = {"variant": "pre-trained", "seed": args.seed, "trained_params": None, "step_ms": None}
    rows = [row | evaluate(pretrained[0], halves, args.smoke)]
    print("variant: " + json.dumps(rows[-1]))
    variants = ["full", "full, BN frozen", *(f"LoRA r={r}" for r in args.ranks), "frozen"]
    for variant in variants:
        rows.append(finetune(args, variant, pretrained, halves, input_shape))
        print("variant: " + json.dumps(rows[-1]))
    print(f"total: {time.perf_counter() - start:.0f} s")

    print_table(rows)
    for row in rows:
        if "merge_max_abs_diff" in row:
            error = row["merge_max_abs_diff"]
            print(f"{row['variant']}: merging the factors changes the embeddings by {error:.1e}")
    plot_forgetting(rows, os.path.join(args.output_dir, "forgetting.png"), f"seed {args.seed}")
    print(f"wrote forgetting.png to {args.output_dir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    metrics = [f"{slug(row['variant'])}_{name}={row[name]:.1f}" for row in rows for name in METRICS]
    print("metrics: " + " ".join(metrics))


if __name__ == "__main__":
    main()
