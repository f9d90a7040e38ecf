"""EmbeddingIndex(method="hnsw" | "ivf") on faiss: agreement with exact search, save/load."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from keras_contrastive.evaluation import EmbeddingIndex

DIM = 16
RNG = np.random.default_rng(0)
# 40 well-separated clusters of 25: the k = 5 nearest rows of a point's
# perturbation are always in its own cluster, and its nearest row is itself.
CENTRES = RNG.normal(size=(40, DIM)).astype("float32") * 4
CORPUS = (np.repeat(CENTRES, 25, axis=0) + RNG.normal(size=(1000, DIM)) * 0.3).astype("float32")
QUERIES = (CORPUS[::37] + RNG.normal(size=(28, DIM)) * 0.01).astype("float32")
APPROXIMATE = {
    "hnsw": {"method": "hnsw"},
    "ivf": {"method": "ivf", "nlist": 8},
    "ivf-pq-rerank": {"method": "ivf", "nlist": 8, "pq_m": 4, "pq_bits": 4, "rerank": 8},
}


def exact_rows(corpus, queries, k, similarity="cosine"):
    """Brute-force NumPy top-k rows, stable on ties."""
    if similarity == "cosine":
        corpus = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries.astype("float64") @ corpus.astype("float64").T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(scores, rows, axis=1)


def built(options, corpus=CORPUS, **kwargs):
    index = EmbeddingIndex(**options, **kwargs)
    index.add(corpus)
    return index


@pytest.mark.parametrize("name", sorted(APPROXIMATE))
def test_finds_the_known_nearest_rows(name):
    index = built(APPROXIMATE[name])
    ids, scores = index.search(QUERIES, k=5)
    want_rows, want_scores = exact_rows(CORPUS, QUERIES, 5)
    np.testing.assert_array_equal(ids[:, 0], np.arange(0, 1000, 37))  # each query's own row
    for got, want in zip(ids, want_rows, strict=True):
        assert set(got) == set(want)
    if "rerank" in APPROXIMATE[name] or name == "hnsw":  # exact vectors: exact scores
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert index.recall_against_exact(QUERIES, k=5) == 1.0


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_exhaustive_settings_equal_exact_search(similarity):
    """HNSW with a beam as wide as the corpus, and IVF probing every list, are exact."""
    corpus = RNG.normal(size=(300, DIM)).astype("float32") * RNG.uniform(0.5, 2, (300, 1))
    queries = RNG.normal(size=(9, DIM)).astype("float32")
    want_rows, want_scores = exact_rows(corpus, queries, 7, similarity)
    exhaustive = ({"method": "hnsw", "ef_search": 300}, {"method": "ivf", "nlist": 4, "nprobe": 4})
    for options in exhaustive:
        index = built(options, corpus, similarity=similarity)
        ids, scores = index.search(queries, 7)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
        for got, want in zip(ids, want_rows, strict=True):
            assert set(got) == set(want), options


def test_string_ids_and_adds_after_the_first_search():
    index = EmbeddingIndex(method="hnsw")
    index.add(CORPUS[:600], ids=[f"row{i}" for i in range(600)])
    assert index.search(QUERIES[:1], 1)[0].tolist() == [["row0"]]  # builds the graph
    index.add(CORPUS[600:], ids=[f"row{i}" for i in range(600, 1000)])  # into the built graph
    ids, _ = index.search(QUERIES, 1)
    assert ids[:, 0].tolist() == [f"row{i}" for i in range(0, 1000, 37)]
    assert len(index) == 1000
    unit = CORPUS / np.linalg.norm(CORPUS, axis=1, keepdims=True)
    np.testing.assert_allclose(index.embeddings, unit, rtol=1e-5, atol=1e-6)


def test_ivf_short_lists_still_return_k_rows():
    """nprobe = 1 list of ~8 rows cannot hold k = 50: those queries search every list."""
    index = built({"method": "ivf", "nlist": 100, "nprobe": 1}, CORPUS[:800])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 800 rows for 100 centroids: undertrained, on purpose
        ids, scores = index.search(QUERIES[:5], k=50)
    assert ids.shape == (5, 50) and np.all(ids >= 0) and np.all(np.isfinite(scores))
    assert all(len(set(row)) == 50 for row in ids)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_pq_without_kept_embeddings_holds_only_codes():
    index = built({"method": "ivf", "nlist": 8, "pq_m": 4, "pq_bits": 4, "keep_embeddings": False})
    kept = built({"method": "ivf", "nlist": 8, "pq_m": 4, "pq_bits": 4})
    ids, _ = index.search(QUERIES, 1)
    np.testing.assert_array_equal(ids[:, 0] // 25, np.arange(0, 1000, 37) // 25)  # its cluster
    assert index.nbytes < kept.nbytes - CORPUS.nbytes + 1
    with pytest.raises(ValueError, match="keep_embeddings=False"):
        index.embeddings  # noqa: B018
    with pytest.raises(ValueError, match="keep_embeddings=False"):
        index.recall_against_exact(QUERIES, 1)


@pytest.mark.parametrize(
    "name, keep",
    [(name, True) for name in sorted(APPROXIMATE)] + [("hnsw", False), ("ivf", False)],
)  # re-ranking needs the kept embeddings: refused in test_bad_options
def test_save_load_round_trip(tmp_path, name, keep):
    index = built(APPROXIMATE[name], keep_embeddings=keep)
    index.add(CORPUS[:3], ids=[5000, 5001, 5002])
    path = str(tmp_path / "index.npz")
    index.save(path)  # builds the structure: `load` does not rebuild it
    restored = EmbeddingIndex.load(path)
    assert restored.get_config() == index.get_config()
    assert len(restored) == 1003
    for got, want in zip(restored.search(QUERIES, 6), index.search(QUERIES, 6), strict=True):
        np.testing.assert_array_equal(got, want)
    restored.add(CORPUS[3:4], ids=[5003])  # a restored index keeps growing
    assert 5003 in restored.search(CORPUS[3:4], 4)[0]


def test_loads_and_searches_in_a_fresh_process(tmp_path):
    index = built(APPROXIMATE["hnsw"])
    path = str(tmp_path / "index.npz")
    index.save(path)
    np.save(tmp_path / "queries.npy", QUERIES)
    code = textwrap.dedent(
        f"""
        import numpy as np
        from keras_contrastive.evaluation import EmbeddingIndex
        index = EmbeddingIndex.load({path!r})
        ids, _ = index.search(np.load({str(tmp_path / "queries.npy")!r}), 3)
        print(",".join(map(str, ids[:, 0])))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == ",".join(map(str, index.search(QUERIES, 3)[0][:, 0]))


def test_search_time_options_can_change_between_searches():
    index = built({"method": "ivf", "nlist": 16, "nprobe": 1})
    index.search(QUERIES, 5)
    index.options["nprobe"] = 16  # every list: exact result sets
    want_rows, _ = exact_rows(CORPUS, QUERIES, 5)
    ids, _ = index.search(QUERIES, 5)
    assert all(set(a) == set(b) for a, b in zip(ids, want_rows, strict=True))


def test_config_round_trip_and_defaults():
    for options in APPROXIMATE.values():
        index = EmbeddingIndex(**options)
        assert EmbeddingIndex.from_config(index.get_config()).get_config() == index.get_config()
    assert EmbeddingIndex(method="hnsw").options == {
        "hnsw_m": 32,
        "ef_construction": 40,
        "ef_search": 128,
    }
    assert EmbeddingIndex(method="ivf").options == {
        "nlist": None,
        "nprobe": 16,
        "pq_m": None,
        "pq_bits": 8,
    }
    assert built({}).recall_against_exact(QUERIES, 3) == 1.0


def test_undertrained_ivf_warns_once():
    with pytest.warns(UserWarning, match="39 per cluster") as record:
        built({"method": "ivf", "nlist": 8, "pq_m": 4}, CORPUS[:300]).search(QUERIES, 1)
    assert len(record) == 2  # the PQ codebooks (256 codes) and the 8 centroids, once each


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"method": "annoy"}, ValueError, "`method`"),
        ({"method": "hnsw", "nprobe": 4}, ValueError, "`nprobe` do not apply to method='hnsw'"),
        ({"method": "exact", "ef_search": 4}, ValueError, "`ef_search` do not apply"),
        ({"method": "ivf", "hnsw_m": 4}, ValueError, "hnsw_m"),
        ({"method": "hnsw", "ef_search": 0}, ValueError, "`ef_search`"),
        ({"method": "hnsw", "ef_search": 8.0}, TypeError, "`ef_search`"),
        ({"method": "ivf", "pq_bits": 20}, ValueError, "`pq_bits`"),
        ({"method": "hnsw", "rerank": 0}, ValueError, "`rerank`"),
        ({"rerank": 2}, ValueError, "`rerank`"),
        ({"keep_embeddings": False}, ValueError, "keep_embeddings=False"),
        ({"method": "ivf", "rerank": 2, "keep_embeddings": False}, ValueError, "keep_embeddings"),
        ({"method": "hnsw", "keep_embeddings": 0}, TypeError, "`keep_embeddings`"),
    ],
)
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        EmbeddingIndex(**options)


def test_bad_corpus_for_the_method():
    with pytest.raises(ValueError, match="`pq_m` must divide the embedding dimension 16"):
        EmbeddingIndex(method="ivf", pq_m=5).add(CORPUS)
    with pytest.raises(ValueError, match="at least `nlist` = 64 embeddings"):
        built({"method": "ivf", "nlist": 64}, CORPUS[:50]).search(QUERIES, 1)
    with pytest.raises(ValueError, match="at least 2\\*\\*pq_bits = 256"):
        built({"method": "ivf", "nlist": 1, "pq_m": 4}, CORPUS[:100]).search(QUERIES, 1)
    index = built(APPROXIMATE["hnsw"])
    with pytest.raises(ValueError, match="`queries`"):
        index.search(QUERIES[:, :4], 1)
    with pytest.raises(ValueError, match="`k`"):
        index.search(QUERIES, 1001)
    with pytest.raises(ValueError, match="empty"):
        EmbeddingIndex(method="hnsw").search(QUERIES, 1)


def test_missing_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    with pytest.raises(ImportError, match=r"keras-contrastive\[index\]"):
        EmbeddingIndex(method="hnsw")
    EmbeddingIndex()  # the exact index needs no faiss


def test_export_index_refuses_an_approximate_index(tmp_path):
    from keras_contrastive.export import export_index

    with pytest.raises(ValueError, match="exact"):
        export_index(built(APPROXIMATE["hnsw"]), str(tmp_path / "index"))
