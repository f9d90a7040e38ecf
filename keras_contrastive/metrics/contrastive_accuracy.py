"""Contrastive top-1 accuracy: is the most similar candidate a positive?"""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.ops._validation import check_choice, check_rank, check_same_batch
from keras_contrastive.ops.similarity import l2_normalize

QUERIES = ("all_views", "first_view")


@keras.saving.register_keras_serializable(package="keras_contrastive")
class ContrastiveAccuracy(keras.metrics.Mean):
    """Top-1 contrastive accuracy: the fraction of queries whose nearest candidate is a positive.

    Similarities are cosine similarities, computed in float32 from the
    L2-normalized embeddings under `stop_gradient`. A tie goes to the first
    candidate in batch order. A query with no positive among its candidates
    (an id seen once in the batch) counts as a miss.

    Two modes, chosen by `queries`:

    - `"all_views"` (SimCLR, SupCon, triplet): every one of the `B·V`
      embeddings is a query against all the other embeddings of the batch
      (itself excluded).
    - `"first_view"` (CLIP image->text, MoCo query->key): the queries are
      `y_pred[:, 0]` and the candidates `y_pred[:, 1]` (other views are
      ignored), nothing excluded.

    Positives: without ids (`y_true=None`) the other views of the same
    example (in `"first_view"`, candidate `i` of query `i`); with `(B,)`
    integer ids (class labels, image group ids) every candidate with the
    query's id.

    Under a `tf.distribute` replica context the candidates and their ids are
    gathered from all replicas (`kc.distribute.gather_candidates`): each
    replica scores its local queries against the global batch, and this
    replica's `total` and `count` hold its share; the model sums the shares
    over replicas (as the `SUM` aggregation of Keras' on-read metric
    variables does when read across replicas), so the summed total over the
    summed count equals the single-device accuracy on the global batch.

    Results accumulate like `keras.metrics.Mean`: `result()` is the weighted
    mean over all queries seen since the last `reset_state()`.

    Args:
        queries: `"all_views"` or `"first_view"`, see above. Defaults to
            `"all_views"`.
        name: str, the metric's name. Defaults to `"contrastive_accuracy"`.
        dtype: the dtype of the metric's variables and result. Defaults to
            `None` (`keras.config.floatx()`).

    `update_state(y_true, y_pred, sample_weight=None)`:
        y_true: `None`, or `(B,)` (or `(B, 1)`) integer ids.
        y_pred: `(B, V, D)` views, `(B, D)` one embedding per example (with
            ids, in `"all_views"` only), or a dict whose `"embeddings"` key
            holds one of those (other keys are ignored).
        sample_weight: optional `(B,)` weights per example, repeated over
            that example's queries.

    Example:

    >>> import numpy as np
    >>> import keras_contrastive as kc
    >>> x = np.random.normal(size=(4, 1, 8)).astype("float32")
    >>> metric = kc.metrics.ContrastiveAccuracy()
    >>> metric.update_state(None, np.concatenate([x, x], axis=1))  # two identical views
    >>> float(metric.result())
    1.0
    """

    def __init__(self, queries="all_views", name="contrastive_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.queries = check_choice("queries", queries, QUERIES)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = _embeddings(y_pred)
        ids = None if y_true is None else _ids("y_true", y_true, y_pred)
        if sample_weight is not None:
            sample_weight = _per_example("sample_weight", sample_weight, y_pred)
        correct, sample_weight = _SCORERS[self.queries](y_pred, ids, sample_weight)
        return super().update_state(correct, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "queries": self.queries}


def _embeddings(y_pred):
    """The `(B, D)` or `(B, V, D)` embeddings of `y_pred`, as float32."""
    if isinstance(y_pred, dict):
        if "embeddings" not in y_pred:
            raise ValueError(
                "A dict `y_pred` must hold the embeddings under the key "
                f'"embeddings". Received: y_pred keys={sorted(y_pred)}'
            )
        y_pred = y_pred["embeddings"]
    y_pred = ops.convert_to_tensor(y_pred)
    check_rank("y_pred", y_pred, (2, 3), "(B, D) or (B, V, D)")
    return ops.cast(y_pred, "float32")


def _per_example(name, x, y_pred):
    """`(B,)` (or `(B, 1)`) per-example values matching `y_pred`'s batch, as `(B,)`."""
    x = ops.convert_to_tensor(x)
    if len(x.shape) == 2 and x.shape[-1] == 1:
        x = ops.squeeze(x, -1)
    check_rank(name, x, (1,), "(B,)")
    return check_same_batch(name, x, "y_pred", y_pred)


def _ids(name, y_true, y_pred):
    """Checks `(B,)` integer ids; float ids are refused (float32 rounds ids together)."""
    y_true = _per_example(name, y_true, y_pred)
    if "int" not in str(y_true.dtype):
        raise ValueError(
            f"`{name}` must be `(B,)` integer ids (class labels or group ids), or None. "
            f"Received: {name}.dtype={y_true.dtype}"
        )
    return y_true


def _no_positives(y_pred, why):
    raise ValueError(
        f"ContrastiveAccuracy has no positives: {why}. Pass `y_pred` as `(B, V, D)` "
        "views with V >= 2, or `(B,)` integer ids as `y_true`. "
        f"Received: y_pred.shape={tuple(y_pred.shape)}, y_true=None"
    )


def _all_views(y_pred, ids, sample_weight):
    """Every embedding against all the others of the global batch."""
    if len(y_pred.shape) == 2:
        y_pred = y_pred[:, None]
    if ids is None and y_pred.shape[1] == 1:
        _no_positives(y_pred, "one embedding per example and no ids")
    local = ops.shape(y_pred)[0]
    global_pred, offset = gather_candidates(y_pred)
    offset = ops.cast(offset, "int32")
    if ids is None:
        ids = ops.arange(local, dtype="int32") + offset  # globally unique example ids
    global_ids, _ = gather_candidates(ids)

    grid = ops.shape(y_pred)[:2]
    query_ids = _flat(ops.broadcast_to(ids[:, None], grid))
    candidate_ids = _flat(ops.broadcast_to(global_ids[:, None], ops.shape(global_pred)[:2]))
    if sample_weight is not None:
        sample_weight = _flat(ops.broadcast_to(sample_weight[:, None], grid))
    queries, candidates = _flat(y_pred), _flat(global_pred)
    # Example-major rows: this replica's queries start at row `offset * V` of the candidates.
    num_queries = ops.shape(queries)[0]
    self_index = ops.arange(num_queries, dtype="int32") + offset * ops.shape(y_pred)[1]
    nearest = _nearest(queries, candidates, self_index)
    correct = ops.logical_and(
        ops.equal(ops.take(candidate_ids, nearest), query_ids),
        ops.not_equal(nearest, self_index),  # a query with no other candidate misses
    )
    return correct, sample_weight


def _first_view(y_pred, ids, sample_weight):
    """`y_pred[:, 0]` against the global `y_pred[:, 1]`."""
    if len(y_pred.shape) == 2 or (y_pred.shape[1] is not None and y_pred.shape[1] < 2):
        raise ValueError(
            'ContrastiveAccuracy(queries="first_view") needs `y_pred` of shape '
            f"(B, V, D) with V >= 2: queries y_pred[:, 0], candidates y_pred[:, 1]. "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    global_candidates, offset = gather_candidates(y_pred[:, 1])
    if ids is None:
        local = ops.shape(y_pred)[0]
        ids = ops.arange(local, dtype="int32") + ops.cast(offset, "int32")
        global_ids = ops.arange(ops.shape(global_candidates)[0], dtype="int32")
    else:
        global_ids, _ = gather_candidates(ids)
    nearest = _nearest(y_pred[:, 0], global_candidates, None)
    return ops.equal(ops.take(global_ids, nearest), ids), sample_weight


def _flat(x):
    """`(B, V)` to `(B·V,)` and `(B, V, D)` to `(B·V, D)`, example-major."""
    return ops.reshape(x, (-1,) + tuple(ops.shape(x)[2:]))


def _nearest(queries, candidates, self_index):
    """The index of each query's most similar candidate (other than `self_index`)."""
    queries = ops.stop_gradient(l2_normalize(queries))
    candidates = ops.stop_gradient(l2_normalize(candidates))
    scores = ops.matmul(queries, ops.transpose(candidates))
    if self_index is not None:
        columns = ops.arange(ops.shape(candidates)[0], dtype="int32")
        scores = ops.where(ops.equal(self_index[:, None], columns[None, :]), -2.0, scores)
    return ops.cast(ops.argmax(scores, axis=-1), "int32")


_SCORERS = {"all_views": _all_views, "first_view": _first_view}
