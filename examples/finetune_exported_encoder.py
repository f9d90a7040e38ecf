"""Fine-tuning an exported encoder on a few labels, the TF Hub way.

An encoder is trained once, exported, and reused by someone else's classifier:

1. A short SimCLR pre-training (as `simclr_digits.py`) of a small CNN on the
   *unlabeled* training images of `kc.datasets.digits()` (fixed 70/30
   split), or an encoder exported before (`--encoder PATH`).
2. `kc.export.export_encoder` writes it as a SavedModel: serving signatures
   and TF Hub's reusable SavedModel API (`__call__(inputs, training)`,
   `variables`, `trainable_variables`), TensorFlow ops only.
3. A new classifier loads it with `tensorflow_hub.KerasLayer(path,
   trainable=...)`, standardizes the embeddings (a `Normalization` layer
   adapted to them, as `kc.evaluation.linear_probe` does) and adds a softmax
   layer. It trains on 10 labels per class (augmented in `tf.data` by
   `kc.layers.SimCLRAugmentation`) in two stages (linear probing then
   fine-tuning, Kumar et al. 2022): **frozen**, only the softmax layer
   learns; then **fine-tuned**, the encoder's weights learn too, with a
   learning rate 1,000 times smaller so that the features are adjusted, not
   overwritten (the Keras transfer-learning guide; the encoder stays in
   inference mode). Test accuracy after each stage, beside a linear
   classifier on raw pixels with the same labels. TF Hub's `KerasLayer` is a
   tf-keras (Keras 2) layer, so that classifier is a `tf_keras.Model`;
   without tensorflow_hub or tf_keras the script loads the same SavedModel
   with `kc.export.SavedModelEncoder` in a Keras 3 `keras.Model`.
4. A picture in `--output-dir`: test accuracy after each epoch of both stages.

    python examples/finetune_exported_encoder.py
    python examples/finetune_exported_encoder.py --encoder outputs/simclr_digits/encoder
    python examples/finetune_exported_encoder.py --smoke    # a few steps, for tests

`--encoder` reuses an encoder exported before, e.g. by the main demo
(`simclr_digits.py` writes `outputs/simclr_digits/encoder`), instead of
pre-training one here.
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
        "--output-dir",
        default="outputs/finetune_exported_encoder",
        help="where the picture (and the encoder pre-trained here) go",
    )
    parser.add_argument(
        "--encoder",
        default=None,
        help="a SavedModel written by kc.export.export_encoder for gray images, e.g. "
        "outputs/simclr_digits/encoder; by default one is pre-trained and exported to "
        "OUTPUT_DIR/encoder",
    )
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    parser.add_argument(
        "--pretrain-epochs", type=int, default=50, help="SimCLR epochs, without --encoder"
    )
    parser.add_argument(
        "--labels-per-class", type=int, default=10, help="labelled training images per digit"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each stage")
    parser.add_argument("--learning-rate", type=float, default=1e-2, help="frozen stage")
    parser.add_argument(
        "--fine-tune-learning-rate", type=float, default=1e-5, help="fine-tuning stage"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the weights, labels and views")
    parser.add_argument("--smoke", action="store_true", help="a tiny run to check the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.pretrain_epochs, args.epochs = 1, 2
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import keras_contrastive as kc  # noqa: E402

tf.get_logger().setLevel("ERROR")


def pretrain_and_export(args, x_train, path):
    """SimCLR on unlabeled images (the settings of `simclr_digits.py`), exported to `path`."""
    input_shape = x_train.shape[1:]
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=input_shape, width=8 if args.smoke else 32),
        projection_head=kc.layers.ProjectionHead(hidden_dims=(256,), output_dim=64),
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
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=kc.losses.NTXentLoss(0.5))
    model.fit(
        x_train,
        batch_size=256,
        epochs=args.pretrain_epochs,
        steps_per_epoch=1 if args.smoke else None,
    )
    kc.export.export_encoder(model, path)


def hub_layer_and_keras():
    """TF Hub's `KerasLayer` and tf-keras, or `SavedModelEncoder` and Keras 3 without them."""
    try:
        import tensorflow_hub as hub
        import tf_keras
    except ImportError:
        print("tensorflow_hub or tf_keras is not installed: using kc.export.SavedModelEncoder")
        return kc.export.SavedModelEncoder, keras
    return hub.KerasLayer, tf_keras


def few_labels(labels, per_class, seed):
    """The indices of `per_class` random examples of each class."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(chosen))


def augmented_batches(x, y, seed):
    """Batches of 32 labelled images, each randomly cropped and rotated, anew each epoch."""
    augment = kc.layers.SimCLRAugmentation(
        image_size=x.shape[1:3],
        value_range=(0, 1),
        crop_area=(0.5, 1.0),
        flip_rate=0.0,
        rotation=10.0,
        seed=seed,
    )
    dataset = kc.datasets.to_dataset(x, y, batch_size=32, shuffle=True, seed=seed)
    return dataset.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)


def build_classifier(encoder_path, x_labelled):
    """`(classifier, encoder_layer, framework)`: the exported encoder, frozen, + softmax."""
    layer_class, framework = hub_layer_and_keras()
    encoder = layer_class(encoder_path, trainable=False)
    standardize = framework.layers.Normalization()
    standardize.adapt(encoder(tf.constant(x_labelled)))
    inputs = framework.Input(x_labelled.shape[1:])
    # Inference mode in both stages (the Keras transfer-learning recipe): batch
    # normalization keeps the statistics of pre-training, which batches of 32 of
    # the 100 labelled images would otherwise overwrite (in training mode the
    # fine-tuned test accuracy fell from 94.4% to 91.7% instead of rising).
    embeddings = encoder(inputs, training=False)
    classifier = framework.Model(inputs, framework.layers.Dense(10)(standardize(embeddings)))
    return classifier, encoder, framework


def fit_stage(classifier, framework, learning_rate, train_ds, test, epochs):
    """Compiles (again, after a change of `trainable`) and fits; test accuracy per epoch."""
    classifier.compile(
        optimizer=framework.optimizers.Adam(learning_rate),
        loss=framework.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # The dataset shuffles itself (`fit`'s own `shuffle` applies to arrays only).
    history = classifier.fit(train_ds, epochs=epochs, validation_data=test, shuffle=False)
    return [100 * value for value in history.history["val_accuracy"]]


def plot_curves(curves, path):
    """Test accuracy after each epoch, the frozen stage then the fine-tuned one."""
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    start = 1
    for name, accuracy in curves.items():
        ax.plot(np.arange(start, start + len(accuracy)), accuracy, label=name)
        start += len(accuracy)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    data = kc.datasets.digits(image_size=args.image_size, channels=1)
    (x_train, y_train), (x_test, y_test) = data.train, data.test

    encoder_path = args.encoder
    if encoder_path is None:
        encoder_path = os.path.join(args.output_dir, "encoder")
        start = time.perf_counter()
        print(f"SimCLR pre-training on {len(x_train)} unlabeled images")
        pretrain_and_export(args, x_train, encoder_path)
        print(f"pre-training and export: {time.perf_counter() - start:.0f} s")
    rows = few_labels(y_train, args.labels_per_class, args.seed)
    train, test = (x_train[rows], y_train[rows]), (x_test, y_test)
    print(f"\nclassifiers on {len(rows)} labelled images, loading {encoder_path}")

    classifier, encoder, framework = build_classifier(encoder_path, train[0])
    train_ds = augmented_batches(*train, args.seed)
    print("\nstage 1: frozen encoder, softmax layer only")
    curves = {
        "frozen": fit_stage(classifier, framework, args.learning_rate, train_ds, test, args.epochs)
    }
    print("\nstage 2: fine-tuning the encoder too")
    encoder.trainable = True
    curves["fine-tuned"] = fit_stage(
        classifier, framework, args.fine_tune_learning_rate, train_ds, test, args.epochs
    )
    raw = kc.evaluation.linear_probe(
        None,
        (train[0].reshape(len(rows), -1), train[1]),
        (x_test.reshape(len(x_test), -1), y_test),
        steps=20 if args.smoke else 500,
    )
    print(f"\ntest accuracy (%) with {args.labels_per_class} labels per class")
    print(f"{'raw pixels, linear':<24}{100 * raw['top1']:>8.1f}")
    for name, accuracy in curves.items():
        print(f"{name + ' encoder':<24}{accuracy[-1]:>8.1f}")

    plot_curves(curves, os.path.join(args.output_dir, "fine_tuning.png"))
    print(f"wrote fine_tuning.png to {args.output_dir}")
    metrics = {f"{name.replace('-', '_')}_accuracy": acc[-1] for name, acc in curves.items()}
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
