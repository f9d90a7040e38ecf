"""Exact top-k search by inner product, in chunks, with a running top-k merge."""

import numpy as np
from keras import ops

from keras_contrastive.ops.similarity import l2_normalize


def normalize(x):
    """Rows of `x` scaled to unit L2 norm, as a float32 NumPy array."""
    return ops.convert_to_numpy(l2_normalize(x))


def _merge(scores, indices, new_scores, new_indices, k):
    """Top-k of the union of two candidate lists; earlier entries win ties."""
    scores = ops.concatenate([scores, new_scores], axis=1)
    indices = ops.concatenate([indices, new_indices], axis=1)
    scores, positions = ops.top_k(scores, k=min(k, scores.shape[1]))
    return scores, ops.take_along_axis(indices, positions, axis=1)


def top_k_search(queries, corpus, k, query_batch_size=1024, corpus_batch_size=65536):
    """The `k` rows of `corpus` with the largest inner product with each query.

    Queries are processed `query_batch_size` at a time against `corpus` chunks
    of `corpus_batch_size` rows, so memory holds at most one
    `(query_batch_size, corpus_batch_size)` block of scores. Ties go to the
    lower corpus index, as a stable sort would order them (`ops.top_k` puts
    the lower position first and earlier chunks are merged first).

    Args:
        queries: `(Q, D)` float32 array.
        corpus: `(N, D)` float32 array, `N >= k`.
        k: number of neighbours.

    Returns:
        `(scores, indices)`: `(Q, k)` float32 scores, best first, and the
        `(Q, k)` int64 corpus row indices.
    """
    corpus = ops.convert_to_tensor(corpus)
    all_scores, all_indices = [], []
    for start in range(0, len(queries), query_batch_size):
        batch = ops.convert_to_tensor(queries[start : start + query_batch_size])
        best = None
        for offset in range(0, corpus.shape[0], corpus_batch_size):
            chunk = corpus[offset : offset + corpus_batch_size]
            scores = ops.matmul(batch, ops.transpose(chunk))
            scores, indices = ops.top_k(scores, k=min(k, chunk.shape[0]))
            found = (scores, ops.cast(indices, "int64") + offset)
            best = found if best is None else _merge(*best, *found, k=k)
        all_scores.append(ops.convert_to_numpy(best[0]))
        all_indices.append(ops.convert_to_numpy(best[1]))
    return np.concatenate(all_scores), np.concatenate(all_indices)
