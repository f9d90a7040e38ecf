"""`export_index`: an `EmbeddingIndex` as a SavedModel that serves top-k search."""

import tensorflow as tf

from keras_contrastive._atomic import atomic_directory
from keras_contrastive.evaluation._data import check_k
from keras_contrastive.export._towers import image_tower, text_tower
from keras_contrastive.export.export_encoder import SAVED_MODEL_FILE
from keras_contrastive.ops._validation import check_choice
from keras_contrastive.ops.similarity import l2_normalize

QUERY_MODALITIES = ("embedding", "image", "text")


def export_index(
    index,
    path,
    query_encoder=None,
    modality="embedding",
    k=10,
    image_size=None,
    input_signature=None,
):
    """Writes an `EmbeddingIndex` as a SavedModel whose signature returns the top-k.

    The `serving_default` signature takes a batch of queries and returns
    `{"ids": (N, k), "scores": (N, k) float32}`, best first, as
    `index.search(queries, k)` does (exact search: one matmul against the whole
    corpus, ties to the row added first). `k` is fixed when exporting. The
    ids are int64 or `tf.string`, as in the index. The corpus and ids are
    non-trainable variables; the SavedModel loads without keras_contrastive
    (a text query encoder needs `import tensorflow_text` first).

    Queries, by `modality`:
    - `"embedding"`: `queries` `(N, D)` float32 embeddings (no encoder).
    - `"image"`: `queries` `(N, H, W, C)` float32 images, embedded by
      `query_encoder` as `export_encoder(..., modality="image")` does.
    - `"text"`: `queries` `(N,)` raw strings, embedded by the text tower of
      `query_encoder` (a dual-encoder `kc.ContrastiveModel`).
    The query embedding is normalized when the index uses cosine similarity.

    Only an exact index (`method="exact"`, the default) can be exported: the
    approximate ones search with faiss, which cannot run inside a TensorFlow
    graph. Save those with `index.save` and search them in Python.

    Args:
        index: an exact `kc.evaluation.EmbeddingIndex` with at least `k` rows.
        path: directory to write the SavedModel to; an existing export there
            is replaced atomically, as `export_encoder` does.
        query_encoder: a `kc.ContrastiveModel` or encoder for `"image"` /
            `"text"` queries; `None` for `"embedding"`. Defaults to `None`.
        modality: `"embedding"` (default), `"image"` or `"text"`.
        k: int, the number of results per query. Defaults to `10`.
        image_size, input_signature: as in `export_encoder`, for image queries.

    Example:

    >>> index = kc.evaluation.EmbeddingIndex()
    >>> index.add(np.eye(4, dtype="float32"), ids=["a", "b", "c", "d"])
    >>> kc.export.export_index(index, "/tmp/index", k=2)
    >>> search = tf.saved_model.load("/tmp/index").signatures["serving_default"]
    >>> search(queries=tf.constant([[0.0, 1.0, 0.1, 0.0]]))["ids"]  # [[b"b", b"c"]]
    """
    check_choice("modality", modality, QUERY_MODALITIES)
    if index.method != "exact":
        raise ValueError(
            "`export_index` serves exact search only: an index with "
            f"method={index.method!r} searches with faiss, which cannot run inside a "
            "SavedModel. Export an exact index of the same corpus "
            "(`EmbeddingIndex(similarity)` and `add` the embeddings), or keep the "
            "approximate one in Python with `index.save(path)` / `EmbeddingIndex.load(path)`."
        )
    if (query_encoder is None) != (modality == "embedding"):
        raise ValueError(
            "Pass a `query_encoder` exactly when queries are images or text: "
            "modality='embedding' takes embeddings, 'image' and 'text' need an encoder. "
            f"Received: modality={modality!r}, query_encoder={type(query_encoder).__name__}"
        )
    k = check_k("k", k, len(index), "embeddings in the index")
    root = tf.train.Checkpoint()
    root.corpus_embeddings = tf.Variable(index.embeddings, trainable=False)
    root.corpus_ids = _ids_variable(index.ids)
    spec = tf.TensorSpec([None, index.embeddings.shape[1]], tf.float32)
    embed = lambda queries: queries  # noqa: E731
    if modality != "embedding":
        tower = (
            image_tower(query_encoder, image_size, input_signature, normalize=False)
            if modality == "image"
            else text_tower(query_encoder, normalize=False)
        )
        spec, embed = tower.input_spec, tower.embed
        root.variables = [v.value for v in tower.variables]
        root.resources = tower.resources
    cosine = index.similarity == "cosine"

    @tf.function
    def search(queries):
        query = embed(queries)
        query = l2_normalize(query) if cosine else query
        scores = tf.matmul(query, root.corpus_embeddings, transpose_b=True)
        best = tf.math.top_k(scores, k=k)
        return {"ids": tf.gather(root.corpus_ids, best.indices), "scores": best.values}

    signature = search.get_concrete_function(spec)
    with atomic_directory(path, marker=SAVED_MODEL_FILE) as new:
        tf.saved_model.save(root, new, signatures={"serving_default": signature})


def _ids_variable(ids):
    """The `(N,)` ids as a non-trainable `tf.string` or int64 variable."""
    if ids.dtype.kind == "U":
        return tf.Variable(tf.constant(ids.tolist(), tf.string), trainable=False)
    return tf.Variable(tf.constant(ids, tf.int64), trainable=False)
