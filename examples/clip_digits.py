"""CLIP on handwritten digits: an image tower and a text tower trained into one space.

A dual encoder (Radford et al. 2021) on `kc.datasets.digits()` with generated
captions ("a handwritten seven", "the digit 7 written by hand", ...):

1. A small CNN reads the images; a small transformer reads the captions,
   tokenized in the graph by `kc.layers.TextPreprocessor` (so the model takes
   raw strings). `CLIPLoss(use_group_ids=True)` with a learnable temperature;
   captions of the same digit are positives of each other (`group_id`), since
   they say the same. With `--hard-negatives H`, a
   `kc.callbacks.HardNegativeMiner` (ANCE) adds to each image the H training
   captions of other digits nearest to it, mined with the current towers every
   `--refresh-every` epochs.
2. Zero-shot classification of the test images from prompts built with
   *held-out* templates (`ZERO_SHOT_TEMPLATES`, phrasings never seen in
   training), and image<->text Recall@1/5/10 against the held-out captions,
   where a caption is relevant to an image when it names the image's digit.
3. A picture of caption-image cosine similarities in `--output-dir`.
4. Serving: both towers exported as one SavedModel (`kc.export.export_encoder`),
   the test images embedded by the *reloaded* image tower into an
   `EmbeddingIndex`, the index exported with the text tower as its query
   encoder (`kc.export.export_index`), reloaded with `tf.saved_model.load`
   and searched by a text query ("a handwritten seven"); the top results'
   labels are printed and drawn.

    python examples/clip_digits.py
    python examples/clip_digits.py --hard-negatives 4
    python examples/clip_digits.py --smoke    # a few steps, for tests

What the progress bar shows: `contrastive_accuracy` is image-to-text top-1 in
the batch: how often the most similar of the B captions of an image's batch
names the image's digit (captions of the same digit are positives; chance about
1/10 with ten digits, 1/B without group ids). `temperature` is the learned
temperature of the logits (1 / logit scale).
"""

import argparse
import os
import time

# TensorFlow's C++ logs off (3: info, warnings and errors; Python errors still raise),
# unless asked for (`TF_CPP_MIN_LOG_LEVEL=0`). Set before TensorFlow is imported, which is
# below the argument parsing (by `_quiet_tensorflow`, which applies it to the start-up logs).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

KS = (1, 5, 10)
QUERY, QUERY_LABEL, SEARCH_K = "a handwritten seven", 7, 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--output-dir",
        default="outputs/clip_digits",
        help="where the pictures and the exported towers and index go",
    )
    parser.add_argument("--image-size", type=int, default=16, help="images are resized to this")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=256, help="image-caption pairs (B)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0, help="of the weights, captions and order")
    parser.add_argument(
        "--hard-negatives",
        type=int,
        default=0,
        help="mined negative captions per image (ANCE); 0: in-batch negatives only",
    )
    parser.add_argument("--refresh-every", type=int, default=5, help="epochs between two minings")
    parser.add_argument("--smoke", action="store_true", help="a tiny run to check the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs = 1
    return args


if __name__ == "__main__":
    parse_args()  # `--help` and bad flags are answered now, before the slow imports below

import _quiet_tensorflow  # noqa: E402, F401  (TensorFlow, its start-up logs filtered too)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import keras_contrastive as kc  # noqa: E402


def caption_pairs(images, labels, captions):
    """Every (image, caption) pair, with the digit as `group_id`."""
    count = captions.shape[1]
    return {
        "image": np.repeat(images, count, axis=0),
        "text": captions.reshape(-1),
        "group_id": np.repeat(labels, count),
    }


def caption_dataset(pairs, batch_size, seed, miner=None):
    """The pairs once per epoch, shuffled; with a miner, each with its mined captions."""
    if miner is None:
        return kc.datasets.to_dataset(pairs, batch_size=batch_size, shuffle=True, seed=seed)
    dataset = miner.with_hard_negatives(tf.data.Dataset.from_tensor_slices(pairs))
    dataset = dataset.shuffle(len(pairs["text"]), seed=seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def caption_miner(pairs, args):
    """`--hard-negatives` captions of other digits per pair, from the distinct training captions."""
    corpus, first = np.unique(pairs["text"], return_index=True)
    return kc.callbacks.HardNegativeMiner(
        pairs["image"],
        pairs["group_id"],
        corpus,
        pairs["group_id"][first],
        num_hard_negatives=args.hard_negatives,
        refresh_every=args.refresh_every,
    )


def build_model(args, input_shape, corpus):
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        corpus, vocabulary_size=200, sequence_length=12, tokenizer="whitespace"
    )
    text_encoder = kc.encoders.text_transformer(
        vocabulary_size=preprocessor.vocabulary_size,
        sequence_length=12,
        embed_dim=32,
        num_heads=2,
        num_layers=1,
    )
    model = kc.ContrastiveModel(
        image_encoder=kc.encoders.small_cnn(input_shape=input_shape, width=16),
        text_encoder=text_encoder,
        image_head=kc.layers.ProjectionHead(hidden_dims=(), output_dim=32, batch_norm=False),
        text_head=kc.layers.ProjectionHead(hidden_dims=(), output_dim=32, batch_norm=False),
        text_preprocessor=preprocessor,
        logit_scale="learnable",
        seed=args.seed,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=kc.losses.CLIPLoss(use_group_ids=True),
    )
    return model


def class_recall(similarity, query_labels, candidate_labels, prefix):
    """Recall@K where a candidate is relevant to a query of the same class."""
    ranked = np.argsort(-similarity, axis=1, kind="stable")
    hits = candidate_labels[ranked] == query_labels[:, None]
    return {f"{prefix}_recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in KS}


def evaluate(model, images, labels):
    """Zero-shot top-1 (held-out templates) and image<->text recall, as fractions."""
    classifier = kc.evaluation.ZeroShotClassifier(
        lambda prompts: model.embed_text(prompts),
        kc.datasets.DIGIT_NAMES,
        templates=kc.datasets.ZERO_SHOT_TEMPLATES,
        image_encoder=lambda x: model.embed_image(x),
    )
    metrics = {"zero_shot_top1": classifier.evaluate((images, labels))["top1"]}
    # Held-out captions: each held-out template with each label word of each digit.
    caption_labels = np.repeat(np.arange(10), 2 * len(kc.datasets.ZERO_SHOT_TEMPLATES))
    captions = kc.datasets.digit_captions(
        caption_labels, captions_per_image=1, templates=kc.datasets.ZERO_SHOT_TEMPLATES
    )[:, 0]
    image_embeddings = kc.ops.l2_normalize(model.embed_image(images))
    text_embeddings = kc.ops.l2_normalize(model.embed_text(tf.constant(captions)))
    similarity = keras.ops.convert_to_numpy(image_embeddings @ keras.ops.transpose(text_embeddings))
    metrics.update(class_recall(similarity, labels, caption_labels, "image_to_text"))
    metrics.update(class_recall(similarity.T, caption_labels, labels, "text_to_image"))
    return metrics


def plot_similarities(model, images, labels, path):
    """One test image of each digit against one held-out prompt per digit."""
    first = np.array([np.flatnonzero(labels == digit)[0] for digit in range(10)])
    prompts = [f"this is a handwritten {name}" for name in kc.datasets.DIGIT_NAMES]
    kc.evaluation.plot_similarity_matrix(
        model.embed_image(images[first]),
        model.embed_text(tf.constant(prompts)),
        images[first],
        prompts,
        path,
        title="Cosine similarity of held-out prompts (rows) to test images (columns)",
    )


def export_and_search(model, images, output_dir):
    """Exports both towers and an index of `images`; searches the reloaded index by `QUERY`.

    Returns the `SEARCH_K` best `(ids, scores)`, ids being rows of `images`.
    """
    towers_path = os.path.join(output_dir, "towers")
    kc.export.export_encoder(model, towers_path, modality="dual")
    embed_image = tf.saved_model.load(towers_path).signatures["embed_image"]
    index = kc.evaluation.EmbeddingIndex()
    index.add(embed_image(images=tf.constant(images))["embedding"].numpy())
    index_path = os.path.join(output_dir, "index")
    kc.export.export_index(index, index_path, query_encoder=model, modality="text", k=SEARCH_K)
    search = tf.saved_model.load(index_path).signatures["serving_default"]
    found = search(queries=tf.constant([QUERY]))
    print(f"exported the towers to {towers_path} and the index to {index_path}")
    return found["ids"].numpy()[0], found["scores"].numpy()[0]


def plot_search(images, labels, scores, path):
    """The images found for `QUERY`, best first, titled with their label and score."""
    fig = Figure(figsize=(1.4 * len(images), 2.0), layout="constrained")
    fig.suptitle(f'"{QUERY}": the {len(images)} best test images')
    axes = fig.subplots(1, len(images))
    for ax, image, label, score in zip(axes, images, labels, scores, strict=True):
        ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(f"{label} ({score:.2f})", fontsize="small")
        ax.set_axis_off()
    fig.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    data = kc.datasets.digits(image_size=args.image_size, channels=1)
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    captions = kc.datasets.digit_captions(y_train, captions_per_image=5, seed=args.seed)
    pairs = caption_pairs(x_train, y_train, captions)
    miner = caption_miner(pairs, args) if args.hard_negatives else None
    dataset = caption_dataset(pairs, args.batch_size, args.seed, miner)
    if args.smoke:
        dataset = dataset.take(2)
    model = build_model(args, x_train.shape[1:], captions.reshape(-1))

    print(
        "contrastive_accuracy: how often an image's most similar caption in its batch names "
        "its digit (chance about 1/10)"
    )
    start = time.perf_counter()
    # The dataset shuffles itself (`fit`'s own `shuffle` applies to arrays only).
    model.fit(dataset, epochs=args.epochs, callbacks=[miner] if miner else [], shuffle=False)
    print(f"training: {time.perf_counter() - start:.0f} s")

    metrics = evaluate(model, x_test, y_test)
    for name, value in metrics.items():
        print(f"{name:<28}{value:.3f}")
    plot_similarities(model, x_test, y_test, os.path.join(args.output_dir, "similarity.png"))

    ids, scores = export_and_search(model, x_test, args.output_dir)
    found = y_test[ids]
    print(f'"{QUERY}": labels of the {SEARCH_K} best test images: {found.tolist()}')
    metrics[f"text_search_precision@{SEARCH_K}"] = float(np.mean(found == QUERY_LABEL))
    plot_search(x_test[ids], found, scores, os.path.join(args.output_dir, "search.png"))
    print(f"wrote similarity.png and search.png to {args.output_dir}")
    print("metrics: " + " ".join(f"{name}={100 * value:.1f}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
