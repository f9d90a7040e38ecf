"""A siamese network on handwritten digits: is this pair the same digit?

The contrastive margin loss (Hadsell, Chopra & LeCun 2006) on labelled pairs:

1. Pairs of `kc.datasets.digits()` images (fixed 70/30 split), half of the
   same digit (`similar=1`) and half of two different digits (`similar=0`),
   drawn from the training split; each image is augmented in `tf.data` by
   `kc.layers.SimCLRAugmentation` (mild crops and rotations) and the batches
   `((x_1, x_2), similar)` go to `ContrastiveModel`. `ContrastiveMarginLoss`
   pulls similar pairs together and pushes dissimilar pairs at least
   `margin` apart in the encoder's output space (a small CNN shared by both
   sides of a pair, without batch normalization: see `build_model`).
2. Verification: a pair is called "same" when the Euclidean distance of its
   two embeddings is below a threshold, the threshold being the one with the
   best accuracy on the *training* pairs; its accuracy on pairs drawn from
   the *test* split, and the ROC-AUC of the distance there, beside the same
   protocol on raw pixels.
3. A picture in `--output-dir`: histograms of the test-pair distances, same
   vs different digit, with the threshold, for raw pixels and the network.

    python examples/siamese_margin_digits.py
    python examples/siamese_margin_digits.py --smoke    # a few steps, for tests
"""

import argparse
import os
import time

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--output-dir", default="outputs/siamese_margin_digits", help="where the picture goes"
    )
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument(
        "--pairs-per-image", type=int, default=4, help="training pairs per training image"
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per batch")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    # 1.0: Hadsell et al. 2006 (and the loss's default).
    parser.add_argument(
        "--margin", type=float, default=1.0, help="distance that dissimilar pairs must exceed"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the weights, pairs and views")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run (2 batches) to check the script"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.width, args.pairs_per_image = 1, 8, 1
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

import keras_contrastive as kc  # noqa: E402


def make_pairs(images, labels, pairs_per_image, seed):
    """`(x_1, x_2), similar`: each image with `pairs_per_image` partners, half same digit."""
    rng = np.random.default_rng(seed)
    by_class = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    first = np.repeat(np.arange(len(labels)), pairs_per_image)
    similar = (np.arange(len(first)) % 2 == 0).astype("int32")
    second = np.empty_like(first)
    for i, (anchor, same) in enumerate(zip(first, similar, strict=True)):
        if same:
            candidates = by_class[labels[anchor]]
            candidates = candidates[candidates != anchor]  # never the image itself
        else:
            candidates = np.flatnonzero(labels != labels[anchor])
        second[i] = rng.choice(candidates)
    return (images[first], images[second]), similar


def pair_dataset(args, pairs, similar):
    """Shuffled batches of pairs, each image augmented on its own, anew each epoch."""
    augment = kc.layers.SimCLRAugmentation(
        image_size=pairs[0].shape[1:3],
        value_range=(0, 1),
        crop_area=(0.5, 1.0),
        flip_rate=0.0,  # a mirrored digit is another glyph
        rotation=10.0,
        seed=args.seed,
    )
    dataset = kc.datasets.to_dataset(
        pairs, similar, batch_size=args.batch_size, shuffle=True, seed=args.seed
    )
    return dataset.map(
        lambda x, q: ((augment(x[0]), augment(x[1])), q), num_parallel_calls=tf.data.AUTOTUNE
    )


def build_model(args, input_shape):
    # No batch normalization: with it, the pair distances at inference (moving
    # statistics) came out about 2.5x smaller than in training (batch statistics),
    # so the margin enforced in training did not hold on test pairs.
    encoder = kc.encoders.small_cnn(input_shape=input_shape, width=args.width, batch_norm=False)
    model = kc.ContrastiveModel(encoder=encoder, seed=args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=kc.losses.ContrastiveMarginLoss(margin=args.margin),
    )
    return model


def distances(embed, pairs):
    """The Euclidean distance between the two embeddings of each pair."""
    first, second = (embed(x).reshape(len(x), -1) for x in pairs)
    return np.linalg.norm(first - second, axis=1)


def best_threshold(distance, similar):
    """The distance threshold (`same` when below) with the best accuracy on these pairs."""
    false_positive, true_positive, thresholds = roc_curve(similar, -distance)
    positives = similar.mean()
    accuracy = positives * true_positive + (1 - positives) * (1 - false_positive)
    return -thresholds[np.argmax(accuracy)]


def verify(embed, train_pairs, test_pairs):
    """Test verification accuracy (train-pair threshold) and ROC-AUC, and the distances."""
    threshold = best_threshold(distances(embed, train_pairs[0]), train_pairs[1])
    distance, similar = distances(embed, test_pairs[0]), test_pairs[1]
    accuracy = np.mean((distance <= threshold) == similar)
    result = {
        "verification_accuracy": 100 * accuracy,
        "roc_auc": 100 * roc_auc_score(similar, -distance),
    }
    return result, distance, threshold


def plot_distances(panels, similar, path):
    """One histogram panel per embedding: test-pair distances, same vs different digit."""
    fig = Figure(figsize=(5 * len(panels), 3.5), layout="constrained")
    for ax, (name, (distance, threshold)) in zip(
        fig.subplots(1, len(panels)), panels.items(), strict=True
    ):
        bins = np.linspace(0, distance.max(), 40)
        ax.hist(distance[similar == 1], bins, alpha=0.6, label="same digit")
        ax.hist(distance[similar == 0], bins, alpha=0.6, label="different digits")
        ax.axvline(threshold, color="black", linestyle="--", label="threshold (train pairs)")
        ax.set_title(name)
        ax.set_xlabel("Euclidean distance")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    data = kc.datasets.digits(image_size=args.image_size, channels=1)
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    train_pairs = make_pairs(x_train, y_train, args.pairs_per_image, args.seed)
    test_pairs = make_pairs(x_test, y_test, 2, args.seed + 1)
    print(
        f"{len(train_pairs[1])} training pairs from {len(x_train)} images, "
        f"{len(test_pairs[1])} test pairs from {len(x_test)} images (half of each: same digit)"
    )

    model = build_model(args, x_train.shape[1:])
    start = time.perf_counter()
    model.fit(
        pair_dataset(args, *train_pairs),
        epochs=args.epochs,
        steps_per_epoch=2 if args.smoke else None,
        shuffle=False,  # the dataset shuffles itself (`fit`'s own applies to arrays only)
    )
    print(f"training: {time.perf_counter() - start:.0f} s")

    embedders = {
        "raw pixels": lambda x: x,
        "siamese network": lambda x: model.predict(x, verbose=0),
    }
    rows, panels = {}, {}
    for name, embed in embedders.items():
        rows[name], distance, threshold = verify(embed, train_pairs, test_pairs)
        panels[name] = distance, threshold
    print(f"\n{'test pairs (%)':<24}" + "".join(f"{name:>18}" for name in rows))
    for metric in rows["raw pixels"]:
        print(f"{metric:<24}" + "".join(f"{row[metric]:>18.1f}" for row in rows.values()))

    plot_distances(panels, test_pairs[1], os.path.join(args.output_dir, "distances.png"))
    print(f"wrote distances.png to {args.output_dir}")
    metrics = rows["siamese network"]
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
