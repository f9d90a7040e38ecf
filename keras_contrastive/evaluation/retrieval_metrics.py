"""Metric-learning retrieval metrics: precision@1, R-precision and MAP@R."""

import numpy as np
from keras import ops

from keras_contrastive.evaluation._data import as_embeddings, check_same_dimension
from keras_contrastive.evaluation.embedding_index import SIMILARITIES, EmbeddingIndex
from keras_contrastive.ops._validation import check_choice, check_int

# Label kinds that can be compared: integers with integers, str with str, bytes with bytes.
_LABEL_KINDS = {"i": "integer", "u": "integer", "U": "str", "S": "bytes"}


def _labels(name, labels, count, count_name):
    """`labels` as a `(count,)` array of integer, str or bytes class labels."""
    labels = np.asarray(ops.convert_to_numpy(labels) if ops.is_tensor(labels) else labels)
    if labels.dtype.kind == "O" and labels.size:  # e.g. a tf.string tensor: bytes objects
        for kind in (str, bytes):
            if all(isinstance(label, kind) for label in labels.flat):
                labels = labels.astype(kind)
    if labels.dtype.kind not in _LABEL_KINDS:
        raise TypeError(
            f"`{name}` must hold integer or string class labels. "
            f"Received: {name}.dtype={labels.dtype}"
        )
    if labels.shape != (count,):
        raise ValueError(
            f"`{name}` must have shape ({count},), one label per row of `{count_name}`. "
            f"Received: {name}.shape={labels.shape}"
        )
    return labels


def _references(queries, query_labels, reference_embeddings, reference_labels):
    """The checked `(references, reference_labels)`: the queries in leave-one-out."""
    if (reference_embeddings is None) != (reference_labels is None):
        raise ValueError(
            "Pass `reference_embeddings` and `reference_labels` together, or neither "
            "(leave-one-out over the queries). Received: "
            f"reference_embeddings={'None' if reference_embeddings is None else 'an array'}, "
            f"reference_labels={'None' if reference_labels is None else 'an array'}"
        )
    if reference_embeddings is None:
        if len(queries) < 2:
            raise ValueError(
                "Leave-one-out (no `reference_embeddings`) needs at least 2 queries. "
                f"Received: query_embeddings.shape={queries.shape}"
            )
        return queries, query_labels
    references = as_embeddings("reference_embeddings", reference_embeddings)
    check_same_dimension("reference_embeddings", references, "query_embeddings", queries)
    labels = _labels("reference_labels", reference_labels, len(references), "reference_embeddings")
    kinds = _LABEL_KINDS[query_labels.dtype.kind], _LABEL_KINDS[labels.dtype.kind]
    if kinds[0] != kinds[1]:
        raise TypeError(
            "`query_labels` and `reference_labels` must be labels of one kind (both "
            f"integers, both str or both bytes). Received: query_labels.dtype="
            f"{query_labels.dtype}, reference_labels.dtype={labels.dtype}"
        )
    return references, labels


def _relevant_counts(query_labels, reference_labels, leave_one_out):
    """`R` of each query: the references with its label, itself excluded in leave-one-out."""
    classes, counts = np.unique(reference_labels, return_counts=True)
    position = np.minimum(np.searchsorted(classes, query_labels), len(classes) - 1)
    found = classes[position] == query_labels
    return np.where(found, counts[position], 0) - int(leave_one_out)


def _without_self(rows, positions):
    """Each row of `(Q, k)` result rows without the query's own position.

    The query is usually first, but a duplicate earlier in the corpus ties
    with it and ranks before it; when it is not among the `k` at all (over
    `k - 1` ties ahead of it), the last result is dropped instead.
    """
    own = rows == positions[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), rows.shape[1] - 1)
    keep = np.ones_like(rows, dtype=bool)
    keep[np.arange(len(rows)), drop] = False
    return rows[keep].reshape(len(rows), rows.shape[1] - 1)


def _per_query(relevant, r):
    """`(precision@1, R-precision, AP@R)` of each query from its `(Q, k)` relevance flags."""
    ranks = np.arange(1, relevant.shape[1] + 1)
    hits = relevant & (ranks <= r[:, None])  # rel(i) for i <= R
    precision = np.cumsum(relevant, axis=1) / ranks  # P(i)
    return relevant[:, 0], hits.sum(axis=1) / r, (precision * hits).sum(axis=1) / r


def retrieval_metrics(
    query_embeddings,
    query_labels,
    reference_embeddings=None,
    reference_labels=None,
    similarity="cosine",
    batch_size=1024,
):
    """Precision@1, R-precision and MAP@R of a retrieval by embedding similarity.

    For each query, `R` is the number of references with its label. The
    references are ranked by similarity (ties go to the reference in the lower
    row, as `EmbeddingIndex.search` orders them); with `rel(i) = 1` when the
    `i`-th has the query's label and `P(i)` the precision of the first `i`:

    - precision@1 = `rel(1)`;
    - R-precision = `(1/R) Σ_{i ≤ R} rel(i)`;
    - MAP@R = `(1/R) Σ_{i ≤ R} P(i)·rel(i)`: like R-precision, but it also
      rewards ranking the relevant references first.

    Each is averaged over the queries. Without a reference set the queries are
    their own references, leave-one-out: each query is removed from its own
    ranking by position (a duplicate of it stays and counts). Queries with
    `R = 0` (a class of one in leave-one-out, or a label absent from the
    references) are left out of all three means. The search is exact
    (`EmbeddingIndex`), `batch_size` queries at a time for their `max R` best
    references: memory holds `batch_size × max R` results, never the whole
    similarity matrix.

    Args:
        query_embeddings: `(Q, D)` embeddings.
        query_labels: `(Q,)` integer or string labels.
        reference_embeddings: `(N, D)` embeddings to search, or `None`
            (default): leave-one-out over the queries (`Q >= 2`).
        reference_labels: `(N,)` labels, of the kind of `query_labels`; given
            if and only if `reference_embeddings` is.
        similarity: `"cosine"` (default) or `"dot"`.
        batch_size: queries searched at once. Default 1024.

    Returns:
        `{"precision_at_1": float, "r_precision": float, "map_at_r": float}`,
        each in `[0, 1]`. Raises `ValueError` when no query has `R > 0`.

    Example:

    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> retrieval_metrics(x, [0, 0, 1, 1])["map_at_r"]
    1.0
    >>> queries = np.array([[1.0, 0.2], [0.2, 1.0]])
    >>> retrieval_metrics(queries, ["a", "b"], x, ["a", "a", "b", "b"])["r_precision"]
    1.0

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality
    Check", ECCV 2020 (R-precision and MAP@R).
    """
    check_choice("similarity", similarity, SIMILARITIES)
    batch_size = check_int("batch_size", batch_size, min=1)
    queries = as_embeddings("query_embeddings", query_embeddings)
    query_labels = _labels("query_labels", query_labels, len(queries), "query_embeddings")
    leave_one_out = reference_embeddings is None
    references, labels = _references(queries, query_labels, reference_embeddings, reference_labels)
    r = _relevant_counts(query_labels, labels, leave_one_out)
    if not np.any(r > 0):
        searched = "themselves, leave-one-out" if leave_one_out else f"{len(labels)} references"
        raise ValueError(
            "No query has a relevant reference (a reference with its label, other than "
            "itself in leave-one-out), so the metrics are undefined. Received: "
            f"{len(queries)} queries, {len(np.unique(query_labels))} distinct label(s), searched "
            f"among {searched}"
        )
    index = EmbeddingIndex(similarity, query_batch_size=batch_size)
    index.add(references)  # ids: the row positions
    totals, count = np.zeros(3), 0
    for start in range(0, len(queries), batch_size):
        positions = np.arange(start, min(start + batch_size, len(queries)))
        positions = positions[r[positions] > 0]
        if not len(positions):
            continue
        k = min(int(r[positions].max()) + int(leave_one_out), len(references))
        rows, _ = index.search(queries[positions], k)
        if leave_one_out:
            rows = _without_self(rows, positions)
        relevant = labels[rows] == query_labels[positions, None]
        totals += [values.sum() for values in _per_query(relevant, r[positions])]
        count += len(positions)
    p1, rp, mapr = totals / count
    return {"precision_at_1": float(p1), "r_precision": float(rp), "map_at_r": float(mapr)}
