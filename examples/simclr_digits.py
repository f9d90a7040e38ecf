"""SimCLR on handwritten digits: self-supervised pre-training, then few-label evaluation.

The main demo of keras_contrastive, offline and on a CPU in a few minutes:

1. SimCLR pre-training (Chen et al. 2020) of a small CNN on the *unlabeled*
   training images of `kc.datasets.digits()` (scikit-learn's 1,797 real 8x8
   scans, upscaled, with a fixed 70/30 stratified split): two random views of
   each image, NT-Xent loss, `model.fit` with Keras progress bars and a kNN
   monitor on the test split.
2. Linear probes on the frozen encoder with 1, 3 and 10 labels per class (mean
   of 5 random label draws) and a kNN classifier with every label, printed as
   a table beside the same protocol on raw pixels; then retrieval of the test
   images among the training images: MAP@R and R-precision (Musgrave et al.
   2020, `kc.evaluation.retrieval_metrics`).
3. The encoder exported as a SavedModel (`kc.export.export_encoder`) to
   `--output-dir`/encoder, ready for `tf.saved_model.load` or for
   `examples/finetune_exported_encoder.py --encoder ...`.
4. Pictures in `--output-dir`: the few-label table (raw pixels against the
   encoder), the test embeddings (PCA and t-SNE) and the training curves.

    python examples/simclr_digits.py                    # the demo (digits)
    python examples/simclr_digits.py --dataset mnist    # a TFDS dataset on disk
    python examples/simclr_digits.py --smoke            # a few steps, for tests

What the progress bar shows: `contrastive_accuracy` is how often a view's most
similar candidate among the other 2B - 1 views of its batch is its other view
(B images, 2 views each: 511 candidates at batch 256, chance 1/511 = 0.2%); it
is scored on augmented training views, so 0.3 is a good value, not a failure.
`knn_accuracy` is a kNN classifier (k = 20) of the test images on the training
embeddings, measured every 10 epochs (`--knn-every`).

Digits are not mirror-symmetric, so the augmentation does not flip them
(`flip_rate=0`); crops keep at least a third of the image, since a small crop
of an 8x8 digit no longer identifies it.
"""

import argparse
import os
import time

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LABELS_PER_CLASS = (1, 3, 10)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (offline) or a TFDS image dataset already on disk, e.g. 'mnist' "
        "or 'cifar10' (never downloaded; needs the tfds extra)",
    )
    parser.add_argument(
        "--output-dir",
        default="outputs/simclr_digits",
        help="where the pictures and the exported encoder go",
    )
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    # Width 16 with τ = 0.7 matched width 32 with τ = 0.5 (seeds 0-2, 1 label per class: 88.2
    # vs 86.4 %; kNN 98.1 vs 98.1 %) in less than half the CPU time (README, "Measured results").
    parser.add_argument("--width", type=int, default=16, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=100, help="pre-training epochs")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (B)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    # SimCLR's CIFAR-10 setting is 0.5 (Chen et al. 2020, appendix B.9); on digits 0.5-1.0
    # beat 0.1 and 0.2 at every label budget (README, "Measured results").
    parser.add_argument("--temperature", type=float, default=0.7, help="NT-Xent's τ")
    # Hard negatives (off by default; benchmarks/hard_negatives_digits.py compares them).
    parser.add_argument("--tau-plus", type=float, default=0.0, help="debiased NT-Xent's τ⁺")
    parser.add_argument("--beta", type=float, default=0.0, help="hard-negative weighting β")
    parser.add_argument("--decoupled", action="store_true", help="the decoupled loss (DCL)")
    parser.add_argument(
        "--knn-every", type=int, default=10, help="epochs between two kNN monitor evaluations"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the weights, views and splits")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (2 epochs of 1 batch, kNN every epoch, few evaluation steps) "
        "to check the script",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.width, args.knn_every = 2, 8, 1
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import keras_contrastive as kc  # noqa: E402

# Each linear probe trains a fresh classifier, which TensorFlow reports as "retracing".
tf.get_logger().setLevel("ERROR")


def load_data(args):
    """`(x_train, y_train), (x_test, y_test), class_names` as NumPy arrays."""
    if args.dataset == "digits":
        return kc.datasets.digits(image_size=args.image_size, channels=1)
    return kc.datasets.tfds_split(args.dataset, image_size=args.image_size)


def build_augmenter(args, input_shape):
    """SimCLR's views (crops, color jitter, blur) with ±10° rotation; no flip for digits."""
    return kc.layers.SimCLRAugmentation(
        image_size=input_shape[:2],
        value_range=(0, 1),
        crop_area=(0.3, 1.0),
        # Digits change meaning when mirrored; natural images do not.
        flip_rate=0.0 if args.dataset in ("digits", "mnist") else 0.5,
        rotation=10.0,
        seed=args.seed,
    )


def build_model(args, input_shape):
    encoder = kc.encoders.small_cnn(input_shape=input_shape, width=args.width)
    model = kc.ContrastiveModel(
        encoder=encoder,
        projection_head=kc.layers.ProjectionHead(hidden_dims=(256,), output_dim=64),
        augmenter=build_augmenter(args, input_shape),
        seed=args.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=ntxent(args),
    )
    return model


def ntxent(args):
    """NT-Xent at `--temperature`, with the flags `--tau-plus`, `--beta` and `--decoupled`."""
    return kc.losses.NTXentLoss(
        temperature=args.temperature,
        tau_plus=args.tau_plus,
        beta=args.beta,
        decoupled=args.decoupled,
    )


def pretrain(model, args, train, test):
    """`model.fit` on the unlabeled training images, a kNN monitor every `--knn-every` epochs.

    Returns the history; prints what `knn_accuracy` is and the pre-training
    time (`--smoke`: one step per epoch, kNN every epoch).
    """
    monitor = kc.callbacks.KNNMonitor(train, test, args.knn_every)
    every = "every epoch" if args.knn_every == 1 else f"every {args.knn_every} epochs"
    print(
        f"knn_accuracy: top-1 of a kNN classifier (k = {monitor.k}) of the {len(test[0])} "
        f"test images on the training embeddings, {every}"
    )
    # The array as a tf.data pipeline without autotuning: each epoch then costs ~3 ms besides
    # its steps, against ~40 ms for the array itself (`benchmarks/epoch_overhead.py`).
    images = kc.datasets.to_dataset(
        train[0], batch_size=args.batch_size, shuffle=True, seed=args.seed
    )
    start = time.perf_counter()
    history = model.fit(
        images,
        epochs=args.epochs,
        callbacks=[monitor],
        steps_per_epoch=1 if args.smoke else None,
        shuffle=False,  # `images` is shuffled anew each epoch
    )
    print(f"pre-training: {time.perf_counter() - start:.0f} s")
    return history


def describe_contrastive_accuracy(batch_size):
    """Prints what SimCLR's `contrastive_accuracy` measures, and its chance level."""
    candidates = 2 * batch_size - 1
    print(
        f"contrastive_accuracy: how often a view's most similar candidate among the other\n"
        f"  2B - 1 = {candidates} views of its batch is its other view (chance 1/{candidates} "
        f"= {100 / candidates:.1f}%);\n  scored on augmented training views, so 0.15-0.3 at the "
        "end is good"
    )


def evaluate(encoder, train, test, smoke):
    """Linear-probe top-1 at each `LABELS_PER_CLASS` and kNN top-1, as percentages."""
    steps = 20 if smoke else 500
    row = {}
    for k in LABELS_PER_CLASS:
        result = kc.evaluation.linear_probe(
            encoder, train, test, labels_per_class=k, num_trials=1 if smoke else 5, steps=steps
        )
        row[f"linear_{k}_per_class"] = 100 * result["top1"]
    embed = (lambda x: x) if encoder is None else (lambda x: encoder.predict(x, verbose=0))
    knn = kc.evaluation.knn_accuracy(embed(train[0]), train[1], embed(test[0]), test[1], k=20)
    row["knn_all_labels"] = 100 * knn["top1"]
    return row


def retrieval(encoder, train, test):
    """MAP@R and R-precision (%) of the test images searched among the training images."""
    embed = (lambda x: x) if encoder is None else (lambda x: encoder.predict(x, verbose=0))
    metrics = kc.evaluation.retrieval_metrics(embed(test[0]), test[1], embed(train[0]), train[1])
    return {name: 100 * metrics[name] for name in ("map_at_r", "r_precision")}


def print_retrieval(raw, trained, title="SimCLR"):
    print(
        f"retrieval of the test images among the training images (cosine): MAP@R "
        f"{raw['map_at_r']:.1f} on raw pixels, {trained['map_at_r']:.1f} with {title}; "
        f"R-precision {raw['r_precision']:.1f} and {trained['r_precision']:.1f}"
    )


def flatten(x, y):
    """Raw pixels as features: `(N, H, W, C)` -> `(N, H * W * C)`."""
    return x.reshape(len(x), -1), y


def print_table(raw, simclr, title="SimCLR"):
    width = max(10, len(title) + 2)
    print(f"\n{'top-1 test accuracy (%)':<28}{'raw pixels':>12}{title:>{width}}")
    for name in raw:
        print(f"{name:<28}{raw[name]:>12.1f}{simclr[name]:>{width}.1f}")


def protocol_label(name):
    """`"linear_3_per_class"` -> `"linear probe\n3 labels/class"`, for the table's picture."""
    if name.startswith("linear_"):
        k = int(name.split("_")[1])
        return f"linear probe\n{k} label{'s' if k > 1 else ''}/class"
    return "kNN (k = 20)\nall labels"


def plot_table(raw, trained, path, title="SimCLR", num_classes=10):
    """The table as bars: each protocol's test accuracy on raw pixels and on the encoder."""
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(raw))
    for offset, name, row in ((-0.2, "raw pixels", raw), (0.2, title, trained)):
        bars = ax.bar(x + offset, list(row.values()), width=0.4, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize="small", padding=2)
    ax.axhline(100 / num_classes, color="gray", linestyle=":", label="chance")
    ax.set_xticks(x, [protocol_label(name) for name in raw])
    ax.set_ylim(0, 118)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.set_title(f"Few labels: classifiers on the frozen {title} encoder vs on raw pixels")
    ax.legend(loc="upper center", ncol=3, fontsize="small")
    fig.savefig(path, dpi=100)


# Each curve's title, y-label and y-range (`None`: fitted to the values).
CURVES = {
    "loss": ("training loss", "loss", None),
    "contrastive_accuracy": ("contrastive accuracy (train)", "positive ranked first", (0, 1)),
    "knn_accuracy": ("kNN monitor (test split)", "top-1 accuracy", (0, 1)),
    "embedding_std": ("collapse monitor", "std of normalized projections", None),
}


def plot_curves(history, path, keys=("loss", "contrastive_accuracy", "knn_accuracy")):
    """One panel per metric of `keys` that was logged; accuracies on a 0-1 axis."""
    keys = [key for key in keys if history.get(key)]
    fig = Figure(figsize=(3.6 * len(keys), 3.3), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        values = history[key]
        every = max(1, len(history["loss"]) // len(values))  # kNN: every N epochs
        ax.plot(np.arange(1, len(values) + 1) * every, values, marker="." if every > 1 else None)
        title, ylabel, ylim = CURVES.get(key, (key.replace("_", " "), key, None))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xlim(0, len(history["loss"]) + 1)  # the same epochs on every panel
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
    fig.savefig(path, dpi=100)


def export(model, args):
    """Exports the encoder to `--output-dir`/encoder and prints how to reuse it."""
    path = os.path.join(args.output_dir, "encoder")
    kc.export.export_encoder(model, path)
    print(f"\nexported the encoder (a SavedModel) to {path}")
    print("  load it anywhere, without keras_contrastive:")
    print(f"    embed = tf.saved_model.load({path!r}).signatures['serving_default']")
    print("    embed(images=x)['embedding']  # x: (N, H, W, C) float32 in [0, 1]")
    if args.dataset == "digits":
        size = "" if args.image_size == 16 else f" --image-size {args.image_size}"
        print("  fine-tune it with 10 labels per class:")
        print(f"    python examples/finetune_exported_encoder.py --encoder {path}{size}")


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    (x_train, y_train), (x_test, y_test), class_names = load_data(args)
    print(
        f"{args.dataset}: {len(x_train)} training images (labels unused for pre-training), "
        f"{len(x_test)} test images of shape {x_train.shape[1:]}"
    )

    model = build_model(args, x_train.shape[1:])
    describe_contrastive_accuracy(min(args.batch_size, len(x_train)))
    history = pretrain(model, args, (x_train, y_train), (x_test, y_test))

    train, test = (x_train, y_train), (x_test, y_test)
    raw = evaluate(None, flatten(*train), flatten(*test), args.smoke)
    simclr = evaluate(model.encoder, train, test, args.smoke)
    print_table(raw, simclr)
    searched = retrieval(model.encoder, train, test)
    print_retrieval(retrieval(None, flatten(*train), flatten(*test)), searched)
    export(model, args)

    embeddings = model.encoder.predict(x_test, verbose=0)
    kc.evaluation.plot_embeddings(
        embeddings,
        y_test,
        os.path.join(args.output_dir, "embeddings.png"),
        methods=("pca",) if args.smoke else None,
        class_names=class_names,
    )
    plot_curves(history.history, os.path.join(args.output_dir, "training_curves.png"))
    plot_table(
        raw, simclr, os.path.join(args.output_dir, "few_labels.png"), num_classes=len(class_names)
    )
    print(f"wrote few_labels.png, embeddings.png and training_curves.png to {args.output_dir}")
    metrics = {**simclr, "map_at_r": searched["map_at_r"]}
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
