"""Evaluation speed: chunked kNN / index search vs a full-matrix NumPy search.

Run: python benchmarks/bench_evaluation.py [--large]

Prints wall times measured side by side in one run, and their ratio. `--large`
adds kNN over 1M x 128 training embeddings (the full similarity matrix of the
1,000 queries would take 4 GB; the chunked search holds one 1,024 x 65,536
block).
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_contrastive.evaluation import (  # noqa: E402
    EmbeddingIndex,
    knn_accuracy,
    linear_probe,
    retrieval_recall,
)


def timed(fn, repeats=3):
    """Best of `repeats` wall times (after one warm-up call) and the result."""
    result = fn()
    best = min(_once(fn) for _ in range(repeats))
    return best, result


def _once(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def numpy_top_k(queries, corpus, k):
    """Brute force: the whole (Q, N) score matrix, then argpartition + sort."""
    scores = queries @ corpus.T
    rows = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, rows, axis=1), axis=1)
    return np.take_along_axis(rows, order, axis=1)


def main(large):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(100_000, 128)).astype("float32")
    queries = rng.normal(size=(1_000, 128)).astype("float32")
    labels = rng.integers(0, 100, size=100_000)

    index = EmbeddingIndex("dot")
    index.add(train)
    ours, _ = timed(lambda: index.search(queries, 20))
    brute, _ = timed(lambda: numpy_top_k(queries, train, 20))
    print(
        f"EmbeddingIndex.search 100k x 128, 1k queries, k=20: {ours:.3f} s; "
        f"NumPy full matrix {brute:.3f} s; ratio {ours / brute:.2f}"
    )

    seconds, _ = timed(lambda: knn_accuracy(train, labels, queries, labels[:1000], k=20))
    print(f"knn_accuracy 100k x 128, 1k queries, k=20: {seconds:.3f} s")

    x, y = load_digits(return_X_y=True)
    x = x.astype("float32")
    seconds, result = timed(lambda: linear_probe(None, (x[:1257], y[:1257]), (x[1257:], y[1257:])))
    print(
        f"linear_probe digits 1257 x 64 -> 540 (500 full-batch steps): {seconds:.3f} s, "
        f"top1 {result['top1']:.3f}"
    )

    images = rng.normal(size=(1_000, 128)).astype("float32")
    texts = np.repeat(images, 5, axis=0) + rng.normal(size=(5_000, 128)).astype("float32")
    seconds, result = timed(lambda: retrieval_recall(images, texts, np.repeat(np.arange(1000), 5)))
    print(
        f"retrieval_recall Flickr-1K shape (1k images, 5k captions): {seconds:.3f} s, "
        f"R@1 i2t {result['image_to_text_recall@1']:.3f}"
    )

    if large:
        train = rng.normal(size=(1_000_000, 128)).astype("float32")
        labels = rng.integers(0, 1000, size=1_000_000)
        seconds = _once(lambda: knn_accuracy(train, labels, queries, labels[:1000], k=200))
        print(f"knn_accuracy 1M x 128, 1k queries, k=200: {seconds:.3f} s (one run)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", action="store_true")
    main(parser.parse_args().large)
