"""Contrastive top-1 accuracy: is a positive the nearest candidate?"""

from keras import ops

from keras_contrastive.ops.similarity import l2_normalize


def nearest_positive_accuracy(queries, candidates, query_ids, candidate_ids, exclude_self):
    """Fraction of queries whose most similar candidate shares their id.

    Args:
        queries: `(N, D)`, candidates: `(M, D)` embeddings.
        query_ids: `(N,)`, candidate_ids: `(M,)` ids; equal ids are positives
            (the same example, the same class, or the same image group).
        exclude_self: if True, candidate `i` is not a candidate for query `i`
            (queries and candidates are the same set).
    """
    queries = ops.stop_gradient(l2_normalize(ops.cast(queries, "float32")))
    candidates = ops.stop_gradient(l2_normalize(ops.cast(candidates, "float32")))
    scores = ops.matmul(queries, ops.transpose(candidates))
    if exclude_self:
        scores = ops.where(ops.eye(ops.shape(scores)[0], dtype="bool"), -2.0, scores)
    nearest = ops.take(candidate_ids, ops.argmax(scores, axis=-1))
    return ops.mean(ops.cast(ops.equal(nearest, query_ids), "float32"))
