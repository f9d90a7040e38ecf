"""ContrastiveAccuracy against a NumPy reference, accumulated, compiled and distributed."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy

import keras_contrastive as kc
from keras_contrastive.metrics import ContrastiveAccuracy

IDS = np.array([0, 1, 0, 2, 1, 0], "int32")  # example 3 has no other example with its id
WEIGHTS = np.array([0.5, 2.0, 1.0, 0.0, 1.5, 3.0], "float32")


def reference(y_true, y_pred, queries, sample_weight=None):
    """`(correct, weights)` per query, written directly from the definition, in float64."""
    x = np.asarray(y_pred, "float64")
    x = x[:, None] if x.ndim == 2 else x
    batch, num_views = x.shape[:2]
    ids = np.arange(batch) if y_true is None else np.asarray(y_true)
    weights = np.ones(batch) if sample_weight is None else np.asarray(sample_weight, "float64")
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    correct, query_weights = [], []
    if queries == "first_view":
        for i in range(batch):
            scores = [x[i, 0] @ x[j, 1] for j in range(batch)]
            correct.append(ids[int(np.argmax(scores))] == ids[i])
            query_weights.append(weights[i])
        return np.array(correct, "float64"), np.array(query_weights)
    rows = [(i, v) for i in range(batch) for v in range(num_views)]
    for i, v in rows:
        others = [(j, w) for j, w in rows if (j, w) != (i, v)]
        scores = [x[i, v] @ x[j, w] for j, w in others]
        correct.append(ids[others[int(np.argmax(scores))][0]] == ids[i])
        query_weights.append(weights[i])
    return np.array(correct, "float64"), np.array(query_weights)


def no_near_ties(y_pred):
    """True if any two candidates' similarities to any query differ by more than 1e-5."""
    x = np.asarray(y_pred, "float64").reshape(-1, np.shape(y_pred)[-1])
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    scores = np.sort(x @ x.T, axis=-1)[:, :-1]  # the last one is the query itself
    return np.all(np.diff(scores, axis=-1) > 1e-5)


def embeddings(shape, seed, noise=0.8):
    """Views of a random example plus noise: some nearest candidates positive, some not."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape[:1] + (1,) * (len(shape) - 2) + shape[-1:])
    x = (x + noise * rng.normal(size=shape)).astype("float32")
    assert no_near_ties(x)
    return x


CASES = [
    # (queries, shape, ids)
    ("all_views", (6, 2, 3), None),
    ("all_views", (6, 3, 3), None),
    ("all_views", (6, 2, 3), IDS),
    ("all_views", (6, 3), IDS),
    ("all_views", (6, 1, 3), IDS),
    ("first_view", (6, 2, 3), None),
    ("first_view", (6, 3, 3), None),
    ("first_view", (6, 2, 3), IDS),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("queries,shape,ids", CASES)
def test_matches_numpy_reference(queries, shape, ids, weighted):
    x = embeddings(shape, seed=0)
    weights = WEIGHTS if weighted else None
    correct, query_weights = reference(ids, x, queries, weights)
    assert 0 < correct.mean() < 1  # neither all right nor all wrong: the check has teeth

    metric = ContrastiveAccuracy(queries=queries)
    metric.update_state(ids, x, sample_weight=weights)
    np.testing.assert_allclose(metric.count, query_weights.sum(), rtol=1e-6)
    np.testing.assert_allclose(metric.total, (correct * query_weights).sum(), rtol=1e-6)
    expected = (correct * query_weights).sum() / query_weights.sum()
    np.testing.assert_allclose(metric.result(), expected, rtol=1e-6)


def test_identical_views_are_all_right_and_column_ids_accepted():
    x = embeddings((5, 1, 4), seed=3)
    for queries in ("all_views", "first_view"):
        metric = ContrastiveAccuracy(queries=queries)
        metric.update_state(None, np.concatenate([x, x], axis=1))
        assert float(metric.result()) == 1.0
    # (B, 1) ids as (B,); a query whose id is unique (example 3) is a miss.
    metric = ContrastiveAccuracy()
    y = np.concatenate([x, x], axis=1)
    metric.update_state(np.array([[0], [1], [0], [2], [1]]), y)
    correct, _ = reference(np.array([0, 1, 0, 2, 1]), y, "all_views")
    np.testing.assert_allclose(metric.result(), correct.mean(), rtol=1e-6)


def test_accumulates_over_batches_and_resets():
    a, b = embeddings((6, 2, 3), seed=5), embeddings((4, 2, 3), seed=6)
    wa, wb = WEIGHTS, np.array([1.0, 0.5, 2.0, 1.0], "float32")
    correct_a, weights_a = reference(IDS, a, "all_views", wa)
    correct_b, weights_b = reference(None, b, "all_views", wb)
    metric = ContrastiveAccuracy()
    metric.update_state(IDS, a, sample_weight=wa)
    metric.update_state(None, b, sample_weight=wb)
    total = (correct_a * weights_a).sum() + (correct_b * weights_b).sum()
    count = weights_a.sum() + weights_b.sum()
    np.testing.assert_allclose(metric.result(), total / count, rtol=1e-6)
    metric.reset_state()
    assert float(metric.count) == 0.0
    metric.update_state(None, b)
    np.testing.assert_allclose(metric.result(), correct_b.mean(), rtol=1e-6)


def test_dict_y_pred_reads_the_embeddings():
    x = embeddings((6, 2, 3), seed=4)
    metric = ContrastiveAccuracy()
    metric.update_state(None, {"embeddings": x, "temperature": np.float32(0.1)})
    np.testing.assert_allclose(metric.result(), reference(None, x, "all_views")[0].mean())
    with pytest.raises(ValueError, match='"embeddings"'):
        metric.update_state(None, {"image": x})


@pytest.mark.parametrize("queries", ["all_views", "first_view"])
@pytest.mark.parametrize("shape", [(4, 1, 3), (4, 3)])
def test_no_positives_without_ids_raises(queries, shape):
    metric = ContrastiveAccuracy(queries=queries)
    with pytest.raises(ValueError, match=r"V >= 2.*Received: y_pred.shape=\(4,"):
        metric.update_state(None, np.ones(shape, "float32"))


def test_first_view_needs_two_views_even_with_ids():
    with pytest.raises(ValueError, match="first_view"):
        ContrastiveAccuracy("first_view").update_state(IDS[:4], np.ones((4, 3), "float32"))


def test_bad_ids_queries_and_shapes_raise():
    x = embeddings((6, 2, 3), seed=4)
    metric = ContrastiveAccuracy()
    with pytest.raises(ValueError, match="integer ids.*float32"):
        metric.update_state(IDS.astype("float32"), x)
    with pytest.raises(ValueError, match="y_true"):
        metric.update_state(IDS[:5], x)
    with pytest.raises(ValueError, match=r"\(B, D\) or \(B, V, D\)"):
        metric.update_state(None, x[:, 0, 0])
    with pytest.raises(ValueError, match=r"\['all_views', 'first_view'\].*queries='all'"):
        ContrastiveAccuracy(queries="all")


def test_config_round_trip():
    metric = ContrastiveAccuracy(queries="first_view", name="clip_accuracy")
    assert metric.get_config()["queries"] == "first_view"
    for restored in (
        keras.metrics.deserialize(keras.metrics.serialize(metric)),
        ContrastiveAccuracy.from_config(metric.get_config()),
    ):
        assert isinstance(restored, ContrastiveAccuracy)
        assert restored.get_config() == metric.get_config()


def test_in_a_model_fit_and_saved(tmp_path):
    x = embeddings((6, 3), seed=0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    model.compile(loss=kc.losses.SupConLoss(), metrics=[ContrastiveAccuracy()])
    logs = model.fit(x, IDS, epochs=1, batch_size=6, verbose=0).history
    assert 0.0 <= logs["contrastive_accuracy"][0] <= 1.0
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    logs = restored.evaluate(x, IDS, batch_size=6, verbose=0, return_dict=True)
    correct, _ = reference(IDS, model.predict(x, verbose=0), "all_views")
    np.testing.assert_allclose(logs["contrastive_accuracy"], correct.mean(), rtol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("queries", ["all_views", "first_view"])
def test_inside_tf_function(queries, jit_compile):
    x = embeddings((6, 2, 3), seed=4)
    correct, weights = reference(IDS, x, queries, WEIGHTS)
    metric = ContrastiveAccuracy(queries=queries)
    signature = [tf.TensorSpec((None,), "int32"), tf.TensorSpec((None, 2, 3))]
    signature.append(tf.TensorSpec((None,)))
    step = tf.function(metric.update_state, input_signature=signature, jit_compile=jit_compile)
    step(IDS, x, WEIGHTS)
    np.testing.assert_allclose(metric.result(), (correct * weights).sum() / weights.sum())


@pytest.mark.parametrize("with_ids", [False, True], ids=["no_ids", "ids"])
@pytest.mark.parametrize("queries", ["all_views", "first_view"])
def test_replica_shares_sum_to_the_single_device_metric(queries, with_ids):
    x = embeddings((5, 2, 3), seed=0)
    ids = np.array([0, 1, 1, 0, 2], "int32") if with_ids else None
    weights = np.array([1.0, 0.5, 2.0, 1.5, 1.0], "float32")
    single = ContrastiveAccuracy(queries=queries)
    single.update_state(ids, x, sample_weight=weights)
    correct, query_weights = reference(ids, x, queries, weights)
    assert 0 < correct.mean() < 1
    np.testing.assert_allclose(single.total, (correct * query_weights).sum(), rtol=1e-6)

    strategy = cpu_strategy(2)
    rows = ((0, 3), (3, 5))  # uneven: the replicas get 3 and 2 examples

    def local(array):
        if array is None:
            return None
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[slice(*rows[ctx.replica_id_in_sync_group])])
        )

    with strategy.scope():
        metric = ContrastiveAccuracy(queries=queries)

    @tf.function
    def step(y_true, y_pred, sample_weight):
        metric.update_state(y_true, y_pred, sample_weight=sample_weight)
        return tf.identity(metric.total.value), tf.identity(metric.count.value)  # local share

    shares = strategy.run(step, args=(local(ids), local(x), local(weights)))
    totals, counts = (np.array(strategy.experimental_local_results(s)) for s in shares)
    # Each replica scored its own queries only, against the global candidates.
    views = 1 if queries == "first_view" else 2
    expected_counts = [query_weights[a * views : b * views].sum() for a, b in rows]
    np.testing.assert_allclose(counts, expected_counts, rtol=1e-6)
    np.testing.assert_allclose(totals.sum(), float(single.total), rtol=1e-6)
    np.testing.assert_allclose(counts.sum(), float(single.count), rtol=1e-6)
    # Keras' on-read SUM variables: read across replicas, the metric is the global one.
    np.testing.assert_allclose(metric.result(), single.result(), rtol=1e-6)
