"""Exact nearest-neighbour search over a corpus of embeddings."""

import json

import numpy as np

from keras_contrastive._atomic import atomic_file
from keras_contrastive.evaluation._data import as_embeddings, check_k
from keras_contrastive.evaluation._search import normalize, top_k_search
from keras_contrastive.ops._validation import check_choice, check_positive

SIMILARITIES = ("cosine", "dot")


class EmbeddingIndex:
    """Exact top-k search by cosine or dot-product similarity, with ids.

    The corpus is kept as one `(N, D)` float32 matrix (`embeddings`, rows
    L2-normalized when `similarity="cosine"`) and an `(N,)` array of `ids`, so
    it can be exported as plain tensors. `search` runs a batched matmul and
    top-k over corpus chunks with a running top-k merge: memory holds at most a
    `(query_batch_size, corpus_batch_size)` block of scores, and the results are
    those of a brute-force sort (ties go to the row added first).

    Args:
        similarity: `"cosine"` (default) or `"dot"`.
        query_batch_size: queries scored at once. Default 1024.
        corpus_batch_size: corpus rows scored at once. Default 65536.

    Example:

    >>> import numpy as np
    >>> index = EmbeddingIndex()
    >>> index.add(np.eye(4, dtype="float32"), ids=["a", "b", "c", "d"])
    >>> ids, scores = index.search(np.array([[0.0, 1.0, 0.1, 0.0]]), k=2)
    >>> ids.tolist()
    [['b', 'c']]
    """

    def __init__(self, similarity="cosine", query_batch_size=1024, corpus_batch_size=65536):
        self.similarity = check_choice("similarity", similarity, SIMILARITIES)
        self.query_batch_size = int(check_positive("query_batch_size", query_batch_size))
        self.corpus_batch_size = int(check_positive("corpus_batch_size", corpus_batch_size))
        self._parts = []
        self._ids = []

    def __len__(self):
        return sum(len(part) for part in self._parts)

    def _consolidate(self):
        """Joins the added parts into one matrix and one id array."""
        if not self._parts:
            raise ValueError("The index is empty: call `add(embeddings)` first.")
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
            self._ids = [np.concatenate(self._ids)]

    @property
    def embeddings(self):
        """The `(N, D)` float32 corpus (normalized rows for cosine)."""
        self._consolidate()
        return self._parts[0]

    @property
    def ids(self):
        """The `(N,)` ids (int64 or str), in the order the rows were added."""
        self._consolidate()
        return self._ids[0]

    def _prepare(self, name, x):
        x = as_embeddings(name, x)
        if self._parts and x.shape[1] != self._parts[0].shape[1]:
            raise ValueError(
                f"`{name}` must have the index dimension "
                f"{self._parts[0].shape[1]}. Received: {name}.shape={x.shape}"
            )
        return normalize(x) if self.similarity == "cosine" else np.array(x)

    def add(self, embeddings, ids=None):
        """Appends `(n, D)` embeddings with `(n,)` ids (integers or strings).

        `ids` defaults to the row positions `len(index), ..., len(index) + n - 1`.
        """
        embeddings = self._prepare("embeddings", embeddings)
        if ids is None:
            ids = np.arange(len(self), len(self) + len(embeddings))
        ids = np.asarray(ids)
        if ids.shape != (len(embeddings),):
            raise ValueError(
                f"`ids` must have shape ({len(embeddings)},), one id per row of "
                f"`embeddings`. Received: ids.shape={ids.shape}"
            )
        if ids.dtype.kind not in "iuU" or (
            self._ids and (ids.dtype.kind == "U") != (self._ids[0].dtype.kind == "U")
        ):
            raise TypeError(
                "`ids` must be all integers or all strings, like the ids already "
                f"in the index. Received: ids.dtype={ids.dtype}"
            )
        self._parts.append(embeddings)
        self._ids.append(ids if ids.dtype.kind == "U" else ids.astype("int64"))

    def search(self, queries, k):
        """The `k` best corpus entries for each of `(Q, D)` queries.

        Returns:
            `(ids, scores)`: `(Q, k)` ids and `(Q, k)` float32 similarities,
            best first.
        """
        corpus = self.embeddings
        queries = self._prepare("queries", queries)
        k = check_k("k", k, len(corpus), "embeddings in the index")
        scores, rows = top_k_search(
            queries, corpus, k, self.query_batch_size, self.corpus_batch_size
        )
        return self.ids[rows], scores

    def get_config(self):
        return {
            "similarity": self.similarity,
            "query_batch_size": self.query_batch_size,
            "corpus_batch_size": self.corpus_batch_size,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save(self, path):
        """Writes the corpus, ids and config to one NumPy `.npz` file at `path`.

        The file is written aside and renamed into place, so a kill during `save`
        leaves the previous file at `path` intact.
        """
        with atomic_file(path) as new, open(new, "wb") as file:
            np.savez(
                file,
                embeddings=self.embeddings,
                ids=self.ids,
                config=np.array(json.dumps(self.get_config())),
            )

    @classmethod
    def load(cls, path):
        """Restores an index written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            index = cls.from_config(json.loads(str(data["config"])))
            index._parts = [data["embeddings"]]
            index._ids = [data["ids"]]
        return index
