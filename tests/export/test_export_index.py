import os

import numpy as np
import pytest

import keras_contrastive as kc

SIZE = 8


def tiny_cnn():
    return kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=2, batch_norm=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An index with string ids, exported for embedding and for image queries."""
    root = tmp_path_factory.mktemp("index")
    rng = np.random.default_rng(0)
    encoder = tiny_cnn()
    corpus_images = rng.uniform(size=(12, SIZE, SIZE, 3)).astype("float32")
    queries = rng.uniform(size=(3, SIZE, SIZE, 3)).astype("float32")
    index = kc.evaluation.EmbeddingIndex()
    index.add(encoder(corpus_images), ids=[f"doc{i}" for i in range(12)])
    dot = kc.evaluation.EmbeddingIndex(similarity="dot")
    dot.add(rng.normal(size=(6, 5)), ids=np.arange(100, 106))
    query_embeddings = rng.normal(size=(2, 5)).astype("float32")
    kc.export.export_index(index, root / "image", query_encoder=encoder, modality="image", k=4)
    kc.export.export_index(dot, root / "dot", k=3)
    expected = {
        "queries": queries,
        "query_embeddings": query_embeddings,
        "image_ids": index.search(encoder(queries), k=4)[0],
        "image_scores": index.search(encoder(queries), k=4)[1],
        "dot_ids": dot.search(query_embeddings, k=3)[0],
        "dot_scores": dot.search(query_embeddings, k=3)[1],
    }
    for name, value in expected.items():
        np.save(root / f"{name}.npy", value)
    return root


SEARCH = """
import os
import numpy as np
import tensorflow as tf

root = os.environ["EXPORT_DIR"]
def expected(name):
    return np.load(os.path.join(root, name + ".npy"))

search = tf.saved_model.load(os.path.join(root, "image")).signatures["serving_default"]
found = search(queries=tf.constant(expected("queries")))
assert found["ids"].dtype == tf.string and found["ids"].shape == (3, 4)
np.testing.assert_array_equal(found["ids"].numpy().astype(str), expected("image_ids"))
np.testing.assert_allclose(found["scores"], expected("image_scores"), atol=1e-5)

search = tf.saved_model.load(os.path.join(root, "dot")).signatures["serving_default"]
found = search(queries=tf.constant(expected("query_embeddings")))
assert found["ids"].dtype == tf.int64
np.testing.assert_array_equal(found["ids"], expected("dot_ids"))
np.testing.assert_allclose(found["scores"], expected("dot_scores"), atol=1e-5)
print("done")
"""


def test_served_search_equals_index_search(exported, consumer):
    assert consumer(SEARCH, EXPORT_DIR=str(exported)).strip().endswith("done")


def test_bad_arguments_are_refused(tmp_path):
    index = kc.evaluation.EmbeddingIndex()
    index.add(np.eye(3, dtype="float32"))
    with pytest.raises(ValueError, match="`k` must be at most .* \\(3\\)"):
        kc.export.export_index(index, tmp_path, k=4)
    with pytest.raises(ValueError, match="query_encoder"):
        kc.export.export_index(index, tmp_path, modality="image")
    with pytest.raises(ValueError, match="query_encoder"):
        kc.export.export_index(index, tmp_path, query_encoder=tiny_cnn())
    with pytest.raises(ValueError, match="modality.*'video'"):
        kc.export.export_index(index, tmp_path, modality="video")
    assert not os.listdir(tmp_path)
