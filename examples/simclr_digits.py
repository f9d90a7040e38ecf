"""SimCLR on handwritten digits: self-supervised pre-training, then few-label evaluation.

The main demo of keras_contrastive, offline and on a CPU in a few minutes:

1. SimCLR pre-training (Chen et al. 2020) of a small CNN on the *unlabeled*
   training images of `kc.datasets.digits()` (scikit-learn's 1,797 real 8x8
   scans, upscaled, with a fixed 70/30 stratified split): two random views of
   each image, NT-Xent loss, `model.fit` with Keras progress bars and a kNN
   monitor on the test split.
2. Linear probes on the frozen encoder with 1, 3 and 10 labels per class (mean
   of 5 random label draws) and a kNN classifier with every label, printed as
   a table beside the same protocol on raw pixels.
3. Pictures in `--output-dir`: the test embeddings (PCA and t-SNE) and the
   training curves.

    python examples/simclr_digits.py                    # the demo (digits)
    python examples/simclr_digits.py --dataset mnist    # a TFDS dataset on disk
    python examples/simclr_digits.py --smoke            # a few steps, for tests

Digits are not mirror-symmetric, so the augmentation does not flip them
(`flip_rate=0`); crops keep at least a third of the image, since a small crop
of an 8x8 digit no longer identifies it.
"""

import argparse
import os
import time

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

import keras_contrastive as kc

# Each linear probe trains a fresh classifier, which TensorFlow reports as "retracing".
tf.get_logger().setLevel("ERROR")

LABELS_PER_CLASS = (1, 3, 10)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (offline, default) or a TFDS image dataset already on "
        "disk, e.g. 'mnist' or 'cifar10' (never downloaded)",
    )
    parser.add_argument("--output-dir", default="outputs/simclr_digits")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    # 0.5: SimCLR's CIFAR-10 setting (Chen et al. 2020, appendix B.9); on digits it beat
    # 0.1 and 0.2 at every label budget (README, "Measured results").
    parser.add_argument("--temperature", type=float, default=0.5)
    # Hard negatives (off by default; benchmarks/hard_negatives_digits.py compares them).
    parser.add_argument("--tau-plus", type=float, default=0.0, help="debiased NT-Xent's τ⁺")
    parser.add_argument("--beta", type=float, default=0.0, help="hard-negative weighting β")
    parser.add_argument("--decoupled", action="store_true", help="the decoupled loss (DCL)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (2 epochs, few evaluation steps) to check the script",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.width = 2, 8
    return args


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
    """`model.fit` on the unlabeled training images, a kNN monitor every 10 epochs; the history.

    Prints the pre-training time (`--smoke`: one step per epoch, kNN every epoch).
    """
    monitor = kc.callbacks.KNNMonitor(train, test, 1 if args.smoke else 10)
    start = time.perf_counter()
    history = model.fit(
        train[0],
        batch_size=args.batch_size,
        epochs=args.epochs,
        callbacks=[monitor],
        steps_per_epoch=1 if args.smoke else None,
    )
    print(f"pre-training: {time.perf_counter() - start:.0f} s")
    return history


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


def flatten(x, y):
    """Raw pixels as features: `(N, H, W, C)` -> `(N, H * W * C)`."""
    return x.reshape(len(x), -1), y


def print_table(raw, simclr, title="SimCLR"):
    width = max(10, len(title) + 2)
    print(f"\n{'top-1 test accuracy (%)':<28}{'raw pixels':>12}{title:>{width}}")
    for name in raw:
        print(f"{name:<28}{raw[name]:>12.1f}{simclr[name]:>{width}.1f}")


def plot_curves(history, path, keys=("loss", "contrastive_accuracy", "knn_accuracy")):
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    axes = fig.subplots(1, len(keys))
    for ax, key in zip(axes, keys, strict=True):
        values = history.get(key, [])
        every = max(1, len(history["loss"]) // max(1, len(values)))
        ax.plot(np.arange(1, len(values) + 1) * every, values, marker="." if every > 1 else None)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
    fig.savefig(path, dpi=100)


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
    history = pretrain(model, args, (x_train, y_train), (x_test, y_test))

    train, test = (x_train, y_train), (x_test, y_test)
    raw = evaluate(None, flatten(*train), flatten(*test), args.smoke)
    simclr = evaluate(model.encoder, train, test, args.smoke)
    print_table(raw, simclr)

    embeddings = model.encoder.predict(x_test, verbose=0)
    kc.evaluation.plot_embeddings(
        embeddings,
        y_test,
        os.path.join(args.output_dir, "embeddings.png"),
        methods=("pca",) if args.smoke else None,
        class_names=class_names,
    )
    plot_curves(history.history, os.path.join(args.output_dir, "training_curves.png"))
    print(f"wrote embeddings.png and training_curves.png to {args.output_dir}")
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in simclr.items()))


if __name__ == "__main__":
    main()
