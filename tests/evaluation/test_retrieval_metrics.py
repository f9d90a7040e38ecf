"""retrieval_metrics (precision@1, R-precision, MAP@R) against a brute-force NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.evaluation import EmbeddingIndex, retrieval_metrics

KEYS = ("precision_at_1", "r_precision", "map_at_r")
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 5, size=60)
EMBEDDINGS = (np.eye(8)[LABELS] * 1.5 + RNG.normal(size=(60, 8))).astype("float32")
NAMES = np.array(["zero", "one", "two", "three", "four"])[LABELS]


def reference(queries, query_labels, refs=None, ref_labels=None, similarity="cosine"):
    """The definitions, literally: a full score matrix and a stable sort per query."""
    leave_one_out = refs is None
    if leave_one_out:
        refs, ref_labels = queries, query_labels
    queries, refs = np.asarray(queries, "float64"), np.asarray(refs, "float64")
    query_labels, ref_labels = np.asarray(query_labels), np.asarray(ref_labels)
    if similarity == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        refs = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    p1, rp, mapr = [], [], []
    for q in range(len(queries)):
        order = np.argsort(-(refs @ queries[q]), kind="stable")
        if leave_one_out:
            order = order[order != q]  # the query itself, by position
        relevant = ref_labels[order] == query_labels[q]
        r = int(relevant.sum())
        if r == 0:
            continue
        p1.append(relevant[0])
        rp.append(relevant[:r].sum() / r)
        mapr.append(sum(relevant[:i].sum() / i for i in range(1, r + 1) if relevant[i - 1]) / r)
    return {"precision_at_1": np.mean(p1), "r_precision": np.mean(rp), "map_at_r": np.mean(mapr)}


def check(got, want):
    assert tuple(got) == KEYS
    assert all(type(value) is float for value in got.values())
    for key in KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("batch_size", [7, 1024])
def test_leave_one_out_matches_numpy(similarity, batch_size):
    got = retrieval_metrics(EMBEDDINGS, LABELS, similarity=similarity, batch_size=batch_size)
    check(got, reference(EMBEDDINGS, LABELS, similarity=similarity))
    assert 0 < got["map_at_r"] <= got["r_precision"] <= 1


@pytest.mark.parametrize("labels", [LABELS, NAMES], ids=["int", "str"])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_reference_set_matches_numpy(labels, similarity):
    args = EMBEDDINGS[:20], labels[:20], EMBEDDINGS[20:], labels[20:]
    got = retrieval_metrics(*args, similarity=similarity, batch_size=3)
    check(got, reference(*args, similarity=similarity))


def test_tensor_labels_and_string_tensors():
    args = EMBEDDINGS[:20], NAMES[:20], EMBEDDINGS[20:], NAMES[20:]
    want = reference(*args)
    check(retrieval_metrics(args[0], tf.constant(args[1]), args[2], tf.constant(args[3])), want)
    check(
        retrieval_metrics(tf.constant(EMBEDDINGS), tf.constant(LABELS)),
        reference(EMBEDDINGS, LABELS),
    )


def test_hand_computed_leave_one_out():
    # Unit vectors at 0, 10, 30 and 65 degrees (cosine ranks by angle gap), labels 0, 0, 1, 0.
    # a (0): b 10°, c 30°, d 65° -> rel 1, 0, 1; R = 2: P@1 = 1, RP = 1/2, AP = (1/1)/2 = 1/2.
    # b (0): a 10°, c 20°, d 55° -> rel 1, 0, 1; R = 2: P@1 = 1, RP = 1/2, AP = 1/2.
    # c (1): R = 0, left out.
    # d (0): c 35°, b 55°, a 65° -> rel 0, 1, 1; R = 2: P@1 = 0, RP = 1/2, AP = (1/2)/2 = 1/4.
    # Means over a, b, d: P@1 = 2/3, RP = 1/2, MAP@R = (1/2 + 1/2 + 1/4)/3 = 5/12.
    angles = np.radians([0.0, 10.0, 30.0, 65.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    got = retrieval_metrics(x, [0, 0, 1, 0])
    check(got, {"precision_at_1": 2 / 3, "r_precision": 1 / 2, "map_at_r": 5 / 12})


def test_hand_computed_reference_set_and_similarity():
    # Query [1, 0] with label 0; references a = [0, 1] (0), b = [1, 0.05] (0), c = [0.9, 0.3] (1).
    # Cosine: b 0.999, c 0.949, a 0 -> rel 1, 0; R = 2: P@1 = 1, RP = 1/2, MAP@R = (1/1)/2.
    refs = np.array([[0.0, 1.0], [1.0, 0.05], [0.9, 0.3]], "float32")
    got = retrieval_metrics([[1.0, 0.0]], [0], refs, [0, 0, 1])
    check(got, {"precision_at_1": 1.0, "r_precision": 0.5, "map_at_r": 0.5})
    # Label 1 instead: R = 1 and c is second: all three are 0.
    check(retrieval_metrics([[1.0, 0.0]], [1], refs, [0, 0, 1]), dict.fromkeys(KEYS, 0.0))
    # a = [5, 5] instead: cosine 0.707 (still last: b, c -> rel 1, 0, MAP@R 1/2), but dot
    # 5 > b's 1 > c's 0.9: a, b -> rel 1, 1, so P@1 = RP = MAP@R = 1.
    refs[0] = [5.0, 5.0]
    assert retrieval_metrics([[1.0, 0.0]], [0], refs, [0, 0, 1])["map_at_r"] == 0.5
    dot = retrieval_metrics([[1.0, 0.0]], [0], refs, [0, 0, 1], similarity="dot")
    check(dot, dict.fromkeys(KEYS, 1.0))


def test_a_constant_encoder_ranks_by_row_order():
    # Every score ties: each query ranks the others in row order. Labels 0 1 0 1 1 0, R = 2:
    # q0: 1 2 3 4 5 -> rel 0 1: P@1 0, RP 1/2, AP 1/4    q1: 0 2 3 4 5 -> rel 0 0: 0, 0, 0
    # q2: 0 1 3 4 5 -> rel 1 0: P@1 1, RP 1/2, AP 1/2    q3: 0 1 2 4 5 -> rel 0 1: 0, 1/2, 1/4
    # q4: 0 1 2 3 5 -> rel 0 1: P@1 0, RP 1/2, AP 1/4    q5: 0 1 2 3 4 -> rel 1 0: 1, 1/2, 1/2
    # (q4 and q5 are not among their k = 3 results: the last result is dropped instead.)
    # Means: P@1 = 2/6, RP = 2.5/6 = 5/12, MAP@R = 1.75/6 = 7/24.
    constant = np.ones((6, 3), "float32")
    labels = np.array([0, 1, 0, 1, 1, 0])
    want = {"precision_at_1": 1 / 3, "r_precision": 5 / 12, "map_at_r": 7 / 24}
    assert reference(constant, labels) == pytest.approx(want)
    for similarity in ("cosine", "dot"):
        check(retrieval_metrics(constant, labels, similarity=similarity, batch_size=4), want)
    # With a reference set: every query ranks the references in row order.
    got = retrieval_metrics(constant[:2], [0, 1], constant, labels)
    check(got, reference(constant[:2], [0, 1], constant, labels))


def test_duplicates_of_the_query_count_but_the_query_does_not():
    twins = np.repeat(EMBEDDINGS[:10], 2, axis=0)  # a query's twin ties with it
    twin_labels = np.repeat(LABELS[:10], 2)
    check(retrieval_metrics(twins, twin_labels, batch_size=3), reference(twins, twin_labels))
    # Pairs of identical points, one class per pair: each query's twin is its only match.
    pairs = np.repeat(np.eye(3, dtype="float32"), 2, axis=0)
    check(retrieval_metrics(pairs, [0, 0, 1, 1, 2, 2]), dict.fromkeys(KEYS, 1.0))


def test_queries_without_relevant_references_are_left_out():
    labels = LABELS.copy()
    labels[:3] = [7, 8, 9]  # classes of one: R = 0 in leave-one-out
    got = retrieval_metrics(EMBEDDINGS, labels, batch_size=2)
    check(got, reference(EMBEDDINGS, labels))
    # Query labels absent from the references (-1 and 99).
    query_labels = np.r_[99, LABELS[1:4], -1]
    got = retrieval_metrics(EMBEDDINGS[:5], query_labels, EMBEDDINGS[5:], LABELS[5:])
    check(got, reference(EMBEDDINGS[:5], query_labels, EMBEDDINGS[5:], LABELS[5:]))


def test_k_is_clamped_when_every_reference_is_relevant():
    check(retrieval_metrics(EMBEDDINGS[:5], np.zeros(5, "int32")), dict.fromkeys(KEYS, 1.0))
    check(
        retrieval_metrics(EMBEDDINGS[:2], [3, 3], EMBEDDINGS[:4], [3] * 4), dict.fromkeys(KEYS, 1.0)
    )


def test_searches_batch_size_queries_for_max_r_results(monkeypatch):
    calls = []
    search = EmbeddingIndex.search

    def recording_search(self, queries, k):
        calls.append((len(queries), k))
        return search(self, queries, k)

    monkeypatch.setattr(EmbeddingIndex, "search", recording_search)
    retrieval_metrics(EMBEDDINGS, LABELS, batch_size=16)
    max_r = np.bincount(LABELS).max() - 1
    assert [size for size, _ in calls] == [16, 16, 16, 12]
    assert max(k for _, k in calls) == max_r + 1  # + 1: the query itself, dropped


def test_no_relevant_reference_at_all_raises():
    with pytest.raises(ValueError, match="No query has a relevant reference"):
        retrieval_metrics(EMBEDDINGS[:4], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="No query has a relevant reference"):
        retrieval_metrics(EMBEDDINGS[:2], [0, 0], EMBEDDINGS[2:4], [1, 1])


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((EMBEDDINGS, LABELS[:5]), {}, ValueError, r"`query_labels` must have shape \(60,\)"),
        ((EMBEDDINGS, LABELS[:, None]), {}, ValueError, r"Received: query_labels.shape=\(60, 1\)"),
        ((EMBEDDINGS, LABELS.astype("float32")), {}, TypeError, "integer or string.*float32"),
        ((EMBEDDINGS, LABELS > 2), {}, TypeError, "query_labels.dtype=bool"),
        ((EMBEDDINGS[:2], [0, None]), {}, TypeError, "query_labels.dtype=object"),
        ((EMBEDDINGS[0], LABELS[:1]), {}, ValueError, r"`query_embeddings` must be a non-empty"),
        ((EMBEDDINGS[:1], LABELS[:1]), {}, ValueError, "at least 2 queries"),
        ((np.full((2, 8), np.nan), [0, 0]), {}, ValueError, "finite"),
        ((EMBEDDINGS, LABELS, EMBEDDINGS), {}, ValueError, "together"),
        ((EMBEDDINGS, LABELS, None, LABELS), {}, ValueError, "reference_embeddings=None"),
        ((EMBEDDINGS, LABELS, EMBEDDINGS[:, :4], LABELS), {}, ValueError, "dimension"),
        ((EMBEDDINGS, LABELS, EMBEDDINGS, LABELS[:3]), {}, ValueError, "`reference_labels`"),
        ((EMBEDDINGS, LABELS, EMBEDDINGS, NAMES), {}, TypeError, "one kind"),
        ((EMBEDDINGS, NAMES, EMBEDDINGS, NAMES.astype("S")), {}, TypeError, "both bytes"),
        ((EMBEDDINGS, LABELS), {"similarity": "l2"}, ValueError, "`similarity` must be one of"),
        ((EMBEDDINGS, LABELS), {"batch_size": 0}, ValueError, "`batch_size`"),
        ((EMBEDDINGS, LABELS), {"batch_size": 2.5}, TypeError, "`batch_size`"),
    ],
)
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        retrieval_metrics(*args, **kwargs)
