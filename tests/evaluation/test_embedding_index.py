"""EmbeddingIndex against brute-force NumPy search, and save/load."""

import numpy as np
import pytest

from keras_contrastive.evaluation import EmbeddingIndex


def reference_search(corpus, queries, k, similarity):
    """Row indices of the k best corpus rows, stable order on ties."""
    if similarity == "cosine":
        corpus = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries.astype("float64") @ corpus.astype("float64").T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


@pytest.fixture
def corpus(rng):
    return rng.normal(size=(50, 8)).astype("float32") * rng.uniform(0.5, 2, size=(50, 1))


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_matches_numpy(rng, corpus, similarity, k):
    queries = rng.normal(size=(13, 8)).astype("float32")
    index = EmbeddingIndex(similarity, query_batch_size=4, corpus_batch_size=6)
    index.add(corpus[:20])
    index.add(corpus[20:])
    ids, scores = index.search(queries, k)
    rows, want_scores = reference_search(corpus, queries, k, similarity)
    np.testing.assert_array_equal(ids, rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_string_ids_and_ties_follow_insertion_order():
    index = EmbeddingIndex(corpus_batch_size=2)
    basis = np.eye(3, dtype="float32")
    index.add(basis[[2, 0, 1, 0]], ids=["c", "a1", "b", "a2"])
    index.add(basis[[0]], ids=["a3"])
    ids, scores = index.search([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], k=3)
    assert ids.tolist() == [["a1", "a2", "a3"], ["c", "a1", "b"]]
    np.testing.assert_array_equal(scores, [[1, 1, 1], [1, 0, 0]])


def test_save_load_round_trip(tmp_path, rng, corpus):
    index = EmbeddingIndex("dot", query_batch_size=3)
    index.add(corpus, ids=np.arange(100, 150))
    path = str(tmp_path / "index.npz")
    index.save(path)
    restored = EmbeddingIndex.load(path)
    assert restored.get_config() == index.get_config()
    np.testing.assert_array_equal(restored.embeddings, index.embeddings)
    queries = rng.normal(size=(5, 8))
    for got, want in zip(restored.search(queries, 7), index.search(queries, 7), strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(restored) == 50


def test_config_round_trip():
    index = EmbeddingIndex("dot", query_batch_size=3, corpus_batch_size=5)
    assert EmbeddingIndex.from_config(index.get_config()).get_config() == index.get_config()


def test_cosine_corpus_is_normalized(corpus):
    index = EmbeddingIndex()
    index.add(corpus)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(index.ids, np.arange(50))


def test_bad_input_names_the_argument(corpus):
    index = EmbeddingIndex()
    with pytest.raises(ValueError, match="empty"):
        index.search(corpus[:1], 1)
    index.add(corpus)
    with pytest.raises(ValueError, match="`k`"):
        index.search(corpus[:1], 51)
    with pytest.raises(ValueError, match="`queries`"):
        index.search(corpus[:1, :4], 1)
    with pytest.raises(ValueError, match="`queries`"):
        index.search(np.full((1, 8), np.nan), 1)
    with pytest.raises(ValueError, match="`embeddings`"):
        index.add(corpus[:, :4])
    with pytest.raises(ValueError, match="`ids`"):
        index.add(corpus[:3], ids=[1, 2])
    with pytest.raises(TypeError, match="`ids`"):
        index.add(corpus[:2], ids=["x", "y"])
    with pytest.raises(ValueError, match="`similarity`"):
        EmbeddingIndex("euclidean")
