"""Self-supervised methods on handwritten digits, one per run, under the SimCLR demo's protocol.

`simclr_digits.py` with the method as a flag: the same unlabeled training
images of `kc.datasets.digits()`, the same `small_cnn` encoder, augmentation,
Adam optimizer, batch size and number of epochs, and the same evaluation (linear
probes with 1, 3 and 10 labels per class, kNN with every label, beside raw
pixels, then MAP@R and R-precision of the test images searched among the training
images). Only the projection head, the `kc.methods` method and the loss change:

- `simclr`: `TwoView` and NT-Xent (Chen et al. 2020), the demo itself;
- `moco`: `MoCo` (momentum keys and a queue of past keys) and InfoNCE, τ = 0.2
  (He et al. 2020; Chen et al. 2020, MoCo v2);
- `barlow_twins`: `TwoView`, `BarlowTwinsLoss` and the paper's 3-layer projector
  with batch normalization, 4x wider than the representation (Zbontar et al. 2021);
- `vicreg`: `TwoView`, `VICRegLoss` and the same expander (Bardes et al. 2022);
- `byol`: `BYOL` (a predictor regressing onto a momentum target network, Grill
  et al. 2020);
- `simsiam`: `SimSiam` (a predictor and a stop-gradient, Chen & He 2021);
- `nnclr`: `NNCLR` (the positive of each view is its nearest neighbour in a
  support set of past projections) and its InfoNCE, τ = 0.1 (Dwibedi et al. 2021);
- `dino`: `DINO` (a student matches a momentum teacher's centered, sharpened
  distribution over prototypes) with multi-crop: the two global views and
  four local 8x8 crops of 5-30% of the image (Caron et al. 2021).

Barlow Twins, VICReg, BYOL, SimSiam and DINO have no negatives, so nothing in their
loss forbids collapse to a constant. The table reports their collapse monitor,
`embedding_std`: the per-dimension standard deviation of the L2-normalized
projections of the training images, about `1 / sqrt(D)` when they are spread
over the sphere, 0 when they collapsed (logged every epoch during training too).

    python examples/ssl_methods_digits.py --method barlow_twins
    python examples/ssl_methods_digits.py --method byol --epochs 200
    python examples/ssl_methods_digits.py --method moco --smoke    # a few steps, for tests

Every other flag is `simclr_digits.py`'s (`--epochs`, `--batch-size`,
`--learning-rate`, `--width`, `--dataset`, `--seed`, `--smoke`); its
`--temperature`, `--tau-plus`, `--beta` and `--decoupled` are SimCLR's NT-Xent's only.
"""

import argparse
import math
import os

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The column title of each method in the table, in the order of `--method`'s choices.
TITLES = {
    "simclr": "SimCLR",
    "moco": "MoCo",
    "barlow_twins": "Barlow Twins",
    "vicreg": "VICReg",
    "byol": "BYOL",
    "simsiam": "SimSiam",
    "nnclr": "NNCLR",
    "dino": "DINO",
}
# No negatives in the loss: collapse is possible, and monitored.
NON_CONTRASTIVE = ("barlow_twins", "vicreg", "byol", "simsiam", "dino")


def method_parser():
    """This script's own flags; the others are `simclr_digits.py`'s."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags: see simclr_digits.py --help.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--method",
        required=True,
        choices=list(TITLES),
        default=argparse.SUPPRESS,
        help="the self-supervised method",
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join("outputs", "ssl_methods_digits", "METHOD"),
        help="where the pictures go (METHOD: the --method)",
    )
    return parser


def parse_args(argv=None):
    args, demo_argv = method_parser().parse_known_args(argv)
    demo = simclr_digits.parse_args(demo_argv)
    demo.method = args.method
    demo.output_dir = args.output_dir.replace("METHOD", args.method)
    return demo


if __name__ == "__main__":
    method_parser().parse_known_args()  # answers `--help` and a bad `--method` before the imports

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import simclr_digits  # noqa: E402  (the main demo, beside this script: data, evaluation)

import keras_contrastive as kc  # noqa: E402


def simclr_head():
    """The demo's head: `Dense(256) -> BN -> ReLU -> Dense(64) -> BN`."""
    return kc.layers.ProjectionHead(hidden_dims=(256,), output_dim=64)


def expander(width):
    """Barlow Twins' and VICReg's projector: `(Dense -> BN -> ReLU) x 2 -> Dense`, all `width`.

    The papers use 8192 units on a 2048-d ResNet-50 representation; the same 4x
    on `small_cnn`'s 128 dims is 512. Batch normalization has PyTorch's defaults,
    as both papers' code; the last layer has none (Barlow Twins' loss
    standardizes its input, VICReg's variance term needs the raw scale), and no
    bias, which both losses cancel.
    """
    layers = []
    for _ in range(2):
        layers += [
            keras.layers.Dense(width, use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
            keras.layers.ReLU(),
        ]
    return keras.Sequential([*layers, keras.layers.Dense(width, use_bias=False)], name="expander")


def method_parts(args, total_steps):
    """`(projection_head, method, loss)` of `args.method`, as its paper, scaled to digits."""
    if args.method == "simclr":
        loss = simclr_digits.ntxent(args)
        return simclr_head(), kc.methods.TwoView(), loss
    # MoCo's queue and NNCLR's support set are a small part of their dataset (65,536 and
    # 98,304 of 1.28 M images). Four batches (1,024 at the default batch of 256) stay
    # below the 1,257 training images: never an older projection of a view's own image.
    queue_size = 4 * args.batch_size
    if args.method == "moco":
        method = kc.methods.MoCo(momentum=0.99, queue_size=queue_size)
        return simclr_head(), method, kc.losses.InfoNCELoss(temperature=0.2)
    if args.method == "barlow_twins":
        return expander(512), kc.methods.TwoView(), kc.losses.BarlowTwinsLoss()
    if args.method == "vicreg":
        return expander(512), kc.methods.TwoView(), kc.losses.VICRegLoss()
    if args.method == "byol":
        # The target's momentum rises from 0.99 to 1 over the run (BYOL's cosine schedule).
        method = kc.methods.BYOL(momentum=0.99, total_steps=total_steps)
        return simclr_head(), method, kc.losses.BYOLLoss()
    if args.method == "simsiam":
        return simclr_head(), kc.methods.SimSiam(), kc.losses.SimSiamLoss()
    if args.method == "nnclr":
        method = kc.methods.NNCLR(queue_size=queue_size)
        return simclr_head(), method, kc.losses.NNCLRLoss(temperature=0.1)
    if args.method == "dino":
        return simclr_head(), dino(args, total_steps), kc.losses.DINOLoss()
    raise ValueError(f"`--method` must be one of {list(TITLES)}. Received: {args.method!r}")


def dino(args, total_steps):
    """DINO as its paper, scaled to digits: 256 prototypes, four local 8x8 crops.

    The paper's multi-crop has two global 224x224 crops of 40-100% of the
    image and several local 96x96 crops of 5-40%; here the global views are
    the demo's 16x16 crops of 30-100% and the local ones 8x8 crops of 5-30%.
    The teacher's momentum rises from 0.99 to 1 (as BYOL's here), its
    temperature from 0.04 to 0.07 over the first tenth of the run; the
    student's temperature is 0.1 and the center's momentum 0.9 (the paper's).
    """
    local = kc.layers.SimCLRAugmentation(
        image_size=(8, 8),
        value_range=(0, 1),
        crop_area=(0.05, 0.3),
        flip_rate=0.0 if args.dataset in ("digits", "mnist") else 0.5,
        rotation=10.0,
        seed=args.seed + 1,
    )
    return kc.methods.DINO(
        num_prototypes=256,
        momentum=0.99,
        total_steps=total_steps,
        local_augmenter=local,
        num_local_views=4,
    )


def build_model(args, input_shape, total_steps):
    """The demo's encoder, augmentation and optimizer, with the method's head and loss."""
    # DINO's local views are smaller than the global ones: an encoder of any image size.
    encoder_shape = (None, None, input_shape[-1]) if args.method == "dino" else input_shape
    encoder = kc.encoders.small_cnn(input_shape=encoder_shape, width=args.width)
    head, method, loss = method_parts(args, total_steps)
    model = kc.ContrastiveModel(
        encoder=encoder,
        projection_head=head,
        augmenter=simclr_digits.build_augmenter(args, input_shape),
        method=method,
        seed=args.seed,
    )
    # BYOL, SimSiam and DINO report `embedding_std` already; the other two add it.
    metrics = [kc.metrics.EmbeddingStd()] if args.method in ("barlow_twins", "vicreg") else None
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss=loss, metrics=metrics)
    return model


def embedding_std(model, images):
    """The collapse monitor on the projections of `images` (inference mode) and their dim `D`."""
    projections = model.projection_head(model.encoder.predict(images, verbose=0), training=False)
    metric = kc.metrics.EmbeddingStd()
    metric.update_state(None, projections)
    return float(metric.result()), projections.shape[-1]


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    (x_train, y_train), (x_test, y_test), class_names = simclr_digits.load_data(args)
    title = TITLES[args.method]
    print(
        f"{title} on {args.dataset}: {len(x_train)} training images (labels unused for "
        f"pre-training), {len(x_test)} test images of shape {x_train.shape[1:]}"
    )

    steps_per_epoch = 1 if args.smoke else math.ceil(len(x_train) / args.batch_size)
    model = build_model(args, x_train.shape[1:], total_steps=args.epochs * steps_per_epoch)
    if args.method == "simclr":
        simclr_digits.describe_contrastive_accuracy(min(args.batch_size, len(x_train)))
    history = simclr_digits.pretrain(model, args, (x_train, y_train), (x_test, y_test))

    train, test = (x_train, y_train), (x_test, y_test)
    flatten = simclr_digits.flatten
    raw = simclr_digits.evaluate(None, flatten(*train), flatten(*test), args.smoke)
    trained = simclr_digits.evaluate(model.encoder, train, test, args.smoke)
    simclr_digits.print_table(raw, trained, title)
    monitored = args.method in NON_CONTRASTIVE
    if monitored:
        std, dim = embedding_std(model, x_train)
        print(f"{'embedding_std':<28}{'-':>12}{std:>{max(10, len(title) + 2)}.3f}")
        print(
            f"(per-dimension std of the L2-normalized training projections; "
            f"1/sqrt({dim}) = {dim**-0.5:.3f} when spread, 0 when collapsed)"
        )
    raw_retrieval = simclr_digits.retrieval(None, flatten(*train), flatten(*test))
    retrieval = simclr_digits.retrieval(model.encoder, train, test)
    simclr_digits.print_retrieval(raw_retrieval, retrieval, title)

    embeddings = model.encoder.predict(x_test, verbose=0)
    kc.evaluation.plot_embeddings(
        embeddings,
        y_test,
        os.path.join(args.output_dir, "embeddings.png"),
        methods=("pca",) if args.smoke else None,
        class_names=class_names,
    )
    curves = ("loss", "embedding_std" if monitored else "contrastive_accuracy", "knn_accuracy")
    simclr_digits.plot_curves(
        history.history, os.path.join(args.output_dir, "training_curves.png"), curves
    )
    simclr_digits.plot_table(
        raw, trained, os.path.join(args.output_dir, "few_labels.png"), title, len(class_names)
    )
    print(f"wrote few_labels.png, embeddings.png and training_curves.png to {args.output_dir}")
    print("metrics: " + " ".join(f"{name}={value:.1f}" for name, value in trained.items()))


if __name__ == "__main__":
    main()
