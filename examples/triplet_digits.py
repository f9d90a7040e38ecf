"""Triplet loss with semi-hard mining on handwritten digits: image retrieval.

FaceNet's recipe (Schroff et al. 2015) on `kc.datasets.digits()` (fixed 70/30
split):

1. `TripletLoss(mining="semi_hard")` on `(images, labels)` batches: for each
   anchor and positive (same digit) in a batch, the closest negative that is
   still farther than the positive, with a margin of 0.2 on the squared
   distance of unit-length embeddings (a small CNN, a dense layer and
   `L2Normalize`, as FaceNet). `ContrastiveModel` makes two SimCLR views of
   each image in the step.
2. Retrieval: each test image is a query, the gallery is the *training*
   split, ranked by cosine similarity (`kc.evaluation.EmbeddingIndex`).
   Precision@1 (is the best match the query's digit) and precision@5 (the
   fraction of the top 5 that are); R-precision and MAP@R over the top R,
   R = the training images of the query's digit (Musgrave et al. 2020,
   `kc.evaluation.retrieval_metrics`); beside the same search on raw pixels.
3. A retrieval grid in `--output-dir`: one test query per digit and its top
   matches, framed green (same digit) or red.

    python examples/triplet_digits.py
    python examples/triplet_digits.py --smoke    # a few steps, for tests
"""

import argparse
import os
import time

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TOP_K = 5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--output-dir", default="outputs/triplet_digits", help="where the picture goes"
    )
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    parser.add_argument("--width", type=int, default=32, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs")
    # Semi-hard mining scores every (anchor, positive, negative) triple of the
    # 2 x batch views, a (2B)^3 tensor: 128 trains as well as 256 in half the time.
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    # 0.2: FaceNet's margin for unit-length embeddings (Schroff et al. 2015, Sec. 3.1).
    parser.add_argument(
        "--margin", type=float, default=0.2, help="on squared distances of unit vectors"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the weights and views")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run (2 epochs of 1 batch) to check the script"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.width = 2, 8
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_contrastive as kc  # noqa: E402


def build_model(args, input_shape):
    # The embedding network ends in unit-length embeddings, as FaceNet's: retrieval
    # searches the very space the triplet loss shapes (no projection head to drop).
    embedding = keras.Sequential(
        [
            kc.encoders.small_cnn(input_shape=input_shape, width=args.width),
            keras.layers.Dense(64),
            kc.layers.L2Normalize(),
        ],
        name="embedding",
    )
    model = kc.ContrastiveModel(
        encoder=embedding,
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
        loss=kc.losses.TripletLoss(
            margin=args.margin, mining="semi_hard", distance="squared_euclidean"
        ),
    )
    return model


def retrieve(gallery, queries):
    """`(ids, scores)` of the `TOP_K` gallery embeddings most similar to each query."""
    index = kc.evaluation.EmbeddingIndex(similarity="cosine")
    index.add(gallery)
    return index.search(queries, k=TOP_K)


def precision(matches):
    """Precision@1 and precision@`TOP_K` of `(Q, TOP_K)` same-digit flags, in %."""
    return {"precision@1": 100 * matches[:, 0].mean(), f"precision@{TOP_K}": 100 * matches.mean()}


def plot_grid(x_train, x_test, y_test, ids, scores, matches, path):
    """The first test image of each digit and its top matches in the training split."""
    queries = np.array([np.flatnonzero(y_test == digit)[0] for digit in range(10)])
    kc.evaluation.plot_retrieval(
        x_test[queries],
        x_train[ids[queries]],
        path,
        scores=scores[queries],
        matches=matches[queries],
    )


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    data = kc.datasets.digits(image_size=args.image_size, channels=1)
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    print(f"gallery: {len(x_train)} training images; queries: {len(x_test)} test images")

    model = build_model(args, x_train.shape[1:])
    start = time.perf_counter()
    model.fit(
        kc.datasets.to_dataset(
            x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed
        ),
        epochs=args.epochs,
        steps_per_epoch=1 if args.smoke else None,
        shuffle=False,  # the dataset shuffles itself
    )
    print(f"training: {time.perf_counter() - start:.0f} s")

    embedders = {
        "raw pixels": lambda x: x.reshape(len(x), -1),
        "triplet": lambda x: model.predict(x, verbose=0),
    }
    searches, rows = {}, {}
    for name, embed in embedders.items():
        gallery, queries = embed(x_train), embed(x_test)
        ids, scores = retrieve(gallery, queries)
        searches[name] = ids, scores, y_train[ids] == y_test[:, None]
        # The top R, R = the gallery images of the query's digit (Musgrave et al. 2020).
        top_r = kc.evaluation.retrieval_metrics(queries, y_test, gallery, y_train)
        rows[name] = {
            **precision(searches[name][2]),
            "R-precision": 100 * top_r["r_precision"],
            "MAP@R": 100 * top_r["map_at_r"],
        }
    print(f"\n{'retrieval on the test split (%)':<34}" + "".join(f"{n:>12}" for n in rows))
    for metric in rows["triplet"]:
        print(f"{metric:<34}" + "".join(f"{row[metric]:>12.1f}" for row in rows.values()))

    path = os.path.join(args.output_dir, "retrieval.png")
    plot_grid(x_train, x_test, y_test, *searches["triplet"], path)
    print(f"wrote retrieval.png to {args.output_dir}")
    names = {"R-precision": "r_precision", "MAP@R": "map_at_r"}
    metrics = {names.get(k, k): v for k, v in rows["triplet"].items()}
    print("metrics: " + " ".join(f"{k}={v:.1f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
