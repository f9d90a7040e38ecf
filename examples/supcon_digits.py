"""Supervised contrastive learning on handwritten digits, beside cross-entropy.

Supervised contrastive pre-training (SupCon, Khosla et al. 2020) against the
usual way of using labels, with the same encoder and the same budget:

1. SupCon: a small CNN and a projection head trained with `SupConLoss` on
   `(images, labels)` batches of `kc.datasets.digits()` (fixed 70/30 split);
   `ContrastiveModel` makes two SimCLR views of each image in the step, and
   every view of the same digit in the batch is a positive.
2. Cross-entropy: the same `small_cnn`, the same augmentation (one view per
   image), a softmax layer on top, the same epochs and batches.
3. Both encoders (the projection head and the softmax layer are dropped) and
   raw pixels, evaluated on the test split with a kNN classifier (k = 20,
   cosine), 1-NN and a linear probe with every training label, and by
   retrieval of the test images among the training images (R-precision and
   MAP@R, Musgrave et al. 2020, `kc.evaluation.retrieval_metrics`), as a table.
4. Pictures in `--output-dir`: the test embeddings of both encoders (PCA and
   t-SNE).

    python examples/supcon_digits.py                    # the demo (digits)
    python examples/supcon_digits.py --dataset mnist    # a TFDS dataset on disk
    python examples/supcon_digits.py --smoke            # a few steps, for tests
"""

import argparse
import functools
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
        "--dataset",
        default="digits",
        help="'digits' (offline) or a TFDS image dataset already on disk, e.g. 'mnist' "
        "or 'cifar10' (never downloaded; needs the tfds extra)",
    )
    parser.add_argument(
        "--output-dir", default="outputs/supcon_digits", help="where the pictures go"
    )
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of each training")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    parser.add_argument("--temperature", type=float, default=0.1, help="SupCon's τ")
    parser.add_argument("--seed", type=int, default=0, help="of the weights and views")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (2 epochs of 1 batch, few evaluation steps) to check the script",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.width = 2, 8
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import simclr_digits  # noqa: E402  (the main demo, beside this script: its augmentation)
import tensorflow as tf  # noqa: E402

import keras_contrastive as kc  # noqa: E402

# Each linear probe trains a fresh classifier, which TensorFlow reports as "retracing".
tf.get_logger().setLevel("ERROR")


def load_data(args):
    """`(x_train, y_train), (x_test, y_test), class_names` as NumPy arrays."""
    if args.dataset == "digits":
        return kc.datasets.digits(image_size=args.image_size, channels=1)
    return kc.datasets.tfds_split(args.dataset, image_size=args.image_size)


def train_supcon(args, train, input_shape):
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=input_shape, width=args.width),
        projection_head=kc.layers.ProjectionHead(hidden_dims=(256,), output_dim=64),
        augmenter=simclr_digits.build_augmenter(args, input_shape),
        seed=args.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=kc.losses.SupConLoss(temperature=args.temperature),
    )
    model.fit(
        kc.datasets.to_dataset(*train, batch_size=args.batch_size, shuffle=True, seed=args.seed),
        epochs=args.epochs,
        steps_per_epoch=1 if args.smoke else None,
        shuffle=False,  # the dataset shuffles itself
    )
    return model.encoder


def train_cross_entropy(args, train, input_shape, num_classes):
    encoder = kc.encoders.small_cnn(input_shape=input_shape, width=args.width)
    classifier = keras.Sequential(
        [
            keras.Input(input_shape),
            simclr_digits.build_augmenter(args, input_shape),  # the identity at inference
            encoder,
            keras.layers.Dense(num_classes),
        ]
    )
    classifier.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    classifier.fit(
        kc.datasets.to_dataset(*train, batch_size=args.batch_size, shuffle=True, seed=args.seed),
        epochs=args.epochs,
        steps_per_epoch=1 if args.smoke else None,
        shuffle=False,  # the dataset shuffles itself
    )
    return encoder


def evaluate(features, train, test, smoke):
    """kNN (k=20), 1-NN, linear-probe top-1, R-precision and MAP@R of `features(x)`, in %."""
    (x_train, y_train), (x_test, y_test) = train, test
    f_train, f_test = features(x_train), features(x_test)
    row = {}
    for k in (20, 1):
        knn = kc.evaluation.knn_accuracy(f_train, y_train, f_test, y_test, k=k)
        row[f"knn_{k}"] = 100 * knn["top1"]
    probe = kc.evaluation.linear_probe(
        None, (f_train, y_train), (f_test, y_test), steps=20 if smoke else 500
    )
    row["linear_all_labels"] = 100 * probe["top1"]
    # Retrieval of the test images among the training images (Musgrave et al. 2020).
    searched = kc.evaluation.retrieval_metrics(f_test, y_test, f_train, y_train)
    row.update({name: 100 * searched[name] for name in ("r_precision", "map_at_r")})
    return row


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    train, test, class_names = load_data(args)
    input_shape = train[0].shape[1:]
    print(
        f"{args.dataset}: {len(train[0])} training and {len(test[0])} test images "
        f"of shape {input_shape}"
    )

    start = time.perf_counter()
    print("\nSupCon pre-training")
    supcon = train_supcon(args, train, input_shape)
    print(f"SupCon: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    print("\ncross-entropy training (same encoder, augmentation, epochs and batches)")
    cross_entropy = train_cross_entropy(args, train, input_shape, len(class_names))
    print(f"cross-entropy: {time.perf_counter() - start:.0f} s")

    encoders = {"cross-entropy": cross_entropy, "SupCon": supcon}
    rows = {"raw pixels": evaluate(lambda x: x.reshape(len(x), -1), train, test, args.smoke)}
    for name, encoder in encoders.items():
        rows[name] = evaluate(
            functools.partial(encoder.predict, verbose=0), train, test, args.smoke
        )
    print(f"\n{'test split (%)':<24}" + "".join(f"{name:>15}" for name in rows))
    for metric in rows["SupCon"]:
        print(f"{metric:<24}" + "".join(f"{row[metric]:>15.1f}" for row in rows.values()))

    for name, encoder in encoders.items():
        filename = f"embeddings_{name.replace('-', '_').lower()}.png"
        kc.evaluation.plot_embeddings(
            encoder.predict(test[0], verbose=0),
            test[1],
            os.path.join(args.output_dir, filename),
            methods=("pca",) if args.smoke else None,
            class_names=class_names,
        )
        print(f"wrote {filename} to {args.output_dir}")
    metrics = {f"supcon_{k}": v for k, v in rows["SupCon"].items()}
    metrics.update({f"cross_entropy_{k}": v for k, v in rows["cross-entropy"].items()})
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
