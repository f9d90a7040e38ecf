"""Weighted k-nearest-neighbour classification accuracy of embeddings."""

import numpy as np

from keras_contrastive.evaluation._data import (
    as_embeddings,
    as_labels,
    check_k,
    check_same_dimension,
    top_k_accuracy,
)
from keras_contrastive.evaluation._search import normalize, top_k_search
from keras_contrastive.ops._validation import check_positive


def knn_accuracy(
    train_embeddings,
    train_labels,
    test_embeddings,
    test_labels,
    k=20,
    temperature=0.07,
    query_batch_size=1024,
    corpus_batch_size=65536,
):
    """Top-1 and top-5 accuracy of a temperature-weighted kNN classifier.

    Each test embedding finds its `k` most cosine-similar training embeddings;
    neighbour `j` votes for its class with weight `exp(s_j / τ)`, and the
    classes are ranked by their total vote (ties go to the lower class id).
    Search is exact and batched: test queries `query_batch_size` at a time
    against training chunks of `corpus_batch_size` rows with a running top-k
    merge, so a 1M × 128 training set never forms the full similarity matrix.

    Args:
        train_embeddings: `(N, D)` training embeddings (normalized here).
        train_labels: `(N,)` integer class ids.
        test_embeddings: `(M, D)` embeddings to classify.
        test_labels: `(M,)` integer class ids.
        k: neighbours per query, `1 <= k <= N`. Default 20 (200 is the other
            common choice in Wu et al.).
        temperature: `τ > 0` of the vote weights. Default 0.07 (Wu et al.).
        query_batch_size: test embeddings searched at once. Default 1024.
        corpus_batch_size: training rows scored at once. Default 65536.

    Returns:
        `{"top1": float, "top5": float}`, fractions in `[0, 1]`. With fewer
        than 5 classes `"top5"` is 1.0.

    Example:

    >>> import numpy as np
    >>> x = np.random.normal(size=(100, 8)).astype("float32")
    >>> y = np.arange(100) % 4
    >>> knn_accuracy(x, y, x, y, k=1)["top1"]
    1.0

    Reference: Wu et al., "Unsupervised Feature Learning via Non-Parametric
    Instance Discrimination", CVPR 2018.
    """
    train = as_embeddings("train_embeddings", train_embeddings)
    test = as_embeddings("test_embeddings", test_embeddings)
    check_same_dimension("test_embeddings", test, "train_embeddings", train)
    train_labels = as_labels("train_labels", train_labels, len(train), "train_embeddings")
    test_labels = as_labels("test_labels", test_labels, len(test), "test_embeddings")
    k = check_k("k", k, len(train), "training embeddings")
    check_positive("temperature", temperature)
    scores, neighbours = top_k_search(
        normalize(test), normalize(train), k, query_batch_size, corpus_batch_size
    )
    # Shifting by the best score of each query keeps exp() finite for tiny τ
    # without changing the ranking of the classes.
    weights = np.exp((scores - scores[:, :1]) / temperature)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    votes = np.zeros((len(test), num_classes))
    rows = np.repeat(np.arange(len(test)), k)
    np.add.at(votes, (rows, train_labels[neighbours].ravel()), weights.ravel())
    return top_k_accuracy(votes, test_labels)
