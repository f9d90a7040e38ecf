"""Weighted kNN accuracy against a brute-force NumPy reference."""

import numpy as np
import pytest

from keras_contrastive.evaluation import knn_accuracy


def reference_knn(train, train_labels, test, test_labels, k, temperature):
    """Full similarity matrix, stable sorts, one Python loop per query."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    num_classes = max(train_labels.max(), test_labels.max()) + 1
    hits1 = hits5 = 0
    for query, label in zip(test, test_labels, strict=True):
        scores = train @ query
        neighbours = sorted(range(len(train)), key=lambda j: (-scores[j], j))[:k]
        votes = np.zeros(num_classes)
        for j in neighbours:
            votes[train_labels[j]] += np.exp((scores[j] - scores[neighbours[0]]) / temperature)
        ranking = sorted(range(num_classes), key=lambda c: (-votes[c], c))
        hits1 += ranking[0] == label
        hits5 += label in ranking[:5]
    return {"top1": hits1 / len(test), "top5": hits5 / len(test)}


@pytest.mark.parametrize("k, temperature", [(1, 0.07), (5, 0.07), (20, 0.5), (60, 0.01)])
def test_matches_numpy_reference(rng, k, temperature):
    train = rng.normal(size=(60, 6)).astype("float32")
    test = rng.normal(size=(25, 6)).astype("float32")
    train_labels = rng.integers(0, 7, size=60)
    test_labels = rng.integers(0, 7, size=25)
    got = knn_accuracy(
        train,
        train_labels,
        test,
        test_labels,
        k=k,
        temperature=temperature,
        query_batch_size=4,
        corpus_batch_size=7,
    )
    want = reference_knn(train, train_labels, test, test_labels, k, temperature)
    assert got == pytest.approx(want)


def test_ties_go_to_the_first_neighbours_and_lower_class():
    # Every training point is equally similar to the query (score 0.5), so the
    # first k by index are the neighbours and each votes exp(0) = 1.
    train = np.eye(4, dtype="float32")[[0, 1, 2, 3, 0, 1]]
    train_labels = np.array([3, 2, 2, 3, 1, 1])
    query = np.full((1, 4), 0.5, "float32")
    # k=4 -> votes {3: 2, 2: 2}: tie, class 2 wins; class 1 is never a neighbour.
    result = knn_accuracy(train, train_labels, query, np.array([2]), k=4, corpus_batch_size=3)
    assert result["top1"] == 1.0
    assert knn_accuracy(train, train_labels, query, np.array([3]), k=4)["top1"] == 0.0


def test_separated_clusters_are_perfect(rng):
    centers = 10 * rng.normal(size=(5, 16))
    labels = np.repeat(np.arange(5), 40)
    x = (centers[labels] + rng.normal(size=(200, 16))).astype("float32")
    result = knn_accuracy(x[::2], labels[::2], x[1::2], labels[1::2], k=10)
    assert result == {"top1": 1.0, "top5": 1.0}


def test_random_labels_are_at_chance(rng):
    x = rng.normal(size=(2000, 8)).astype("float32")
    labels = rng.integers(0, 10, size=2000)
    result = knn_accuracy(x[:1000], labels[:1000], x[1000:], labels[1000:], k=20)
    assert abs(result["top1"] - 0.1) < 0.04
    assert abs(result["top5"] - 0.5) < 0.06


def test_tiny_temperature_stays_finite(rng):
    x = rng.normal(size=(30, 4)).astype("float32")
    labels = np.arange(30) % 3
    assert knn_accuracy(x, labels, x, labels, k=5, temperature=1e-4)["top1"] == 1.0


@pytest.mark.parametrize(
    "change, match",
    [
        ({"train_labels": np.zeros(9, "int64")}, "train_labels"),
        ({"test_labels": np.zeros((10, 1), "int64")}, "test_labels"),
        ({"train_labels": np.zeros(10, "float32")}, "train_labels"),
        ({"k": 11}, "k"),
        ({"k": 0}, "k"),
        ({"temperature": 0.0}, "temperature"),
        ({"test_embeddings": np.full((10, 3), np.nan, "float32")}, "test_embeddings"),
        ({"test_embeddings": np.ones((10, 4), "float32")}, "test_embeddings"),
        ({"train_embeddings": np.ones(10, "float32")}, "train_embeddings"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    args = {
        "train_embeddings": np.ones((10, 3), "float32"),
        "train_labels": np.zeros(10, "int64"),
        "test_embeddings": np.ones((10, 3), "float32"),
        "test_labels": np.zeros(10, "int64"),
        "k": 5,
    }
    args.update(change)
    with pytest.raises((ValueError, TypeError), match=f"`{match}`"):
        knn_accuracy(**args)
