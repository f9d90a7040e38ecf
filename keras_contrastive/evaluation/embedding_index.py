"""Nearest-neighbour search over a corpus of embeddings: exact, HNSW or IVF."""

import json

import numpy as np

from keras_contrastive._atomic import atomic_file
from keras_contrastive.evaluation import _approximate
from keras_contrastive.evaluation._data import as_embeddings, check_k
from keras_contrastive.evaluation._search import normalize, top_k_search
from keras_contrastive.ops._validation import check_bool, check_choice, check_int, check_positive

SIMILARITIES = ("cosine", "dot")


class EmbeddingIndex:
    """Top-k search by cosine or dot-product similarity, with ids: exact or approximate.

    `method="exact"` (the default) keeps the corpus as one `(N, D)` float32
    matrix (`embeddings`, rows L2-normalized when `similarity="cosine"`) and
    an `(N,)` array of `ids`. `search` runs a batched matmul and top-k over
    corpus chunks with a running top-k merge: memory holds at most a
    `(query_batch_size, corpus_batch_size)` block of scores, and the results
    are those of a brute-force sort (ties go to the row added first). Only an
    exact index can be served inside a SavedModel (`kc.export.export_index`).

    `method="hnsw"` and `method="ivf"` search approximately with faiss
    (`pip install "keras-contrastive[index]"`), for corpora where exact search
    is too slow: its cost grows with N, theirs far slower. The faiss structure
    is built at the first `search` (IVF trains its centroids, and its product
    quantizer, on everything added until then); later `add`s are inserted
    into it. `recall_against_exact` measures what the approximation costs, to
    tune the options below. faiss cannot run inside a TensorFlow graph, so an
    approximate index is saved with `save` and searched in Python, not
    exported.

    Args:
        similarity: `"cosine"` (default) or `"dot"`.
        method: `"exact"` (default), `"hnsw"` (a graph: fast, high recall,
            about `4·D + 8·M` bytes a row) or `"ivf"` (an inverted file of
            `nlist` lists, of which `nprobe` are searched; with `pq_m`, product
            quantization stores `pq_m` bytes a row).
        query_batch_size: queries scored at once by exact search and
            re-ranking. Default 1024.
        corpus_batch_size: corpus rows scored at once by exact search.
            Default 65536.
        hnsw_m: HNSW links per node (`M`); more is slower to build, more
            memory, higher recall. Default 32 (faiss's `"HNSW32"`).
        ef_construction: HNSW beam width while building. Default 40 (faiss's).
        ef_search: HNSW beam width while searching, at least the number of
            candidates asked for; the main recall/speed knob. Default 128.
        nlist: IVF lists (k-means centroids). Default `4·sqrt(N)` at build
            time, at most `N / 39` (faiss's guideline).
        nprobe: IVF lists searched per query; the main recall/speed knob.
            Default 16.
        pq_m: IVF-PQ sub-vectors (a divisor of D), each coded in `pq_bits`
            bits. Default `None`: no quantization (IVF-Flat).
        pq_bits: bits per PQ code. Default 8 (faiss's).
        rerank: `None` (default), or an int `r >= 1`: fetch `r·k` candidates
            approximately and re-score them exactly against the float32
            corpus (this undoes most of PQ's loss of recall). Needs
            `keep_embeddings=True`.
        keep_embeddings: whether an approximate index also keeps the float32
            corpus (4·D bytes a row): needed by `embeddings`, `rerank` and
            `recall_against_exact`. Default `True`; `False` lets IVF-PQ hold
            only its codes. An exact index always keeps it.

    Example:

    >>> import numpy as np
    >>> index = EmbeddingIndex()
    >>> index.add(np.eye(4, dtype="float32"), ids=["a", "b", "c", "d"])
    >>> ids, scores = index.search(np.array([[0.0, 1.0, 0.1, 0.0]]), k=2)
    >>> ids.tolist()
    [['b', 'c']]
    >>> approximate = EmbeddingIndex(method="hnsw")  # needs faiss-cpu
    >>> approximate.add(np.random.normal(size=(1000, 16)))
    >>> approximate.recall_against_exact(np.random.normal(size=(10, 16)), k=5)  # ~1.0
    """

    def __init__(
        self,
        similarity="cosine",
        method="exact",
        query_batch_size=1024,
        corpus_batch_size=65536,
        hnsw_m=None,
        ef_construction=None,
        ef_search=None,
        nlist=None,
        nprobe=None,
        pq_m=None,
        pq_bits=None,
        rerank=None,
        keep_embeddings=True,
    ):
        self.similarity = check_choice("similarity", similarity, SIMILARITIES)
        self.method = check_choice("method", method, _approximate.METHODS)
        self.query_batch_size = int(check_positive("query_batch_size", query_batch_size))
        self.corpus_batch_size = int(check_positive("corpus_batch_size", corpus_batch_size))
        given = {
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "nlist": nlist,
            "nprobe": nprobe,
            "pq_m": pq_m,
            "pq_bits": pq_bits,
        }
        self.options = self._resolve_options(given)
        self.rerank = check_int("rerank", rerank, min=1, allow_none=True)
        self.keep_embeddings = check_bool("keep_embeddings", keep_embeddings)
        if not keep_embeddings and (method == "exact" or rerank is not None):
            raise ValueError(
                "`keep_embeddings=False` is for approximate indexes without re-ranking: "
                "exact search and `rerank` score the float32 corpus. Received: "
                f"method={method!r}, rerank={rerank!r}"
            )
        if rerank is not None and method == "exact":
            raise ValueError("`rerank` re-scores approximate candidates; method='exact' has none.")
        if method != "exact":
            _approximate.import_faiss(method)
        self._parts = []  # float32 rows not yet consolidated (or not yet in faiss)
        self._ids = []
        self._dim = None
        self._structure = None  # the faiss structure, built at the first search
        self._num_rows = 0

    def _resolve_options(self, given):
        """The options of `method` with their defaults; others must stay unset."""
        defaults = _approximate.OPTIONS.get(self.method, {})
        foreign = [name for name in given if given[name] is not None and name not in defaults]
        if foreign:
            raise ValueError(
                f"{', '.join(f'`{name}`' for name in foreign)} do not apply to "
                f"method={self.method!r}; its options are "
                f"{sorted(defaults) or 'none'}. Received: "
                + ", ".join(f"{name}={given[name]!r}" for name in foreign)
            )
        options = {}
        for name, default in defaults.items():
            value = default if given[name] is None else given[name]
            options[name] = check_int(name, value, min=1, allow_none=True)
        if "pq_bits" in options:
            check_int("pq_bits", options["pq_bits"], min=1, max=16)
        return options

    def __len__(self):
        return self._num_rows

    def _consolidate(self):
        """Joins the added parts into one matrix and one id array."""
        if not self._num_rows:
            raise ValueError("The index is empty: call `add(embeddings)` first.")
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        if len(self._ids) > 1:
            self._ids = [np.concatenate(self._ids)]

    @property
    def embeddings(self):
        """The `(N, D)` float32 corpus (normalized rows for cosine)."""
        if not self.keep_embeddings:
            raise ValueError(
                "This index was built with `keep_embeddings=False`: it holds only "
                "faiss's codes, not the float32 corpus."
            )
        self._consolidate()
        return self._parts[0]

    @property
    def ids(self):
        """The `(N,)` ids (int64 or str), in the order the rows were added."""
        self._consolidate()
        return self._ids[0]

    @property
    def nbytes(self):
        """Bytes the index holds: the float32 corpus if kept, the ids, the faiss structure.

        The faiss structure is counted as `faiss.serialize_index` writes it
        (which copies it: slow for a large index), built first if need be.
        """
        self._consolidate()
        total = self.ids.nbytes + (self.embeddings.nbytes if self.keep_embeddings else 0)
        if self.method != "exact":
            total += _approximate.serialize(self._built()).nbytes
        return total

    def _prepare(self, name, x):
        x = as_embeddings(name, x)
        if self._dim is not None and x.shape[1] != self._dim:
            raise ValueError(
                f"`{name}` must have the index dimension {self._dim}. "
                f"Received: {name}.shape={x.shape}"
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
        self._check_pq_m(embeddings.shape[1])
        self._dim = embeddings.shape[1]
        self._ids.append(ids if ids.dtype.kind == "U" else ids.astype("int64"))
        self._num_rows += len(embeddings)
        if self._structure is not None:
            self._structure.add(embeddings)
        if self._structure is None or self.keep_embeddings:
            self._parts.append(embeddings)

    def _check_pq_m(self, dim):
        pq_m = self.options.get("pq_m")
        if pq_m is not None and dim % pq_m:
            raise ValueError(
                f"`pq_m` must divide the embedding dimension {dim} (PQ splits each "
                f"row into pq_m equal sub-vectors). Received: pq_m={pq_m}"
            )

    def _built(self):
        """The faiss structure, built from everything added so far if need be."""
        if self._structure is None:
            self._consolidate()
            self._structure = _approximate.build(self.method, self.options, self._parts[0])
            if not self.keep_embeddings:
                self._parts = []
        return self._structure

    def search(self, queries, k):
        """The `k` best corpus entries for each of `(Q, D)` queries.

        Returns:
            `(ids, scores)`: `(Q, k)` ids and `(Q, k)` float32 similarities,
            best first.
        """
        self._consolidate()
        queries = self._prepare("queries", queries)
        k = check_k("k", k, len(self), "embeddings in the index")
        scores, rows = self._search_rows(queries, k)
        return self.ids[rows], scores

    def _search_rows(self, queries, k):
        """`(scores, rows)` with corpus row positions instead of ids."""
        if self.method == "exact":
            return top_k_search(
                queries, self.embeddings, k, self.query_batch_size, self.corpus_batch_size
            )
        candidates = min(k * (self.rerank or 1), len(self))
        scores, rows = _approximate.search(self._built(), self.options, queries, candidates)
        if self.rerank is None:
            return scores, rows
        return self._rerank(queries, rows, k)

    def _rerank(self, queries, rows, k):
        """The `k` best of each query's candidate `rows`, scored exactly."""
        corpus = self.embeddings
        rows = np.sort(rows, axis=1)  # so that ties go to the row added first
        all_scores, all_rows = [], []
        for start in range(0, len(queries), self.query_batch_size):
            block = rows[start : start + self.query_batch_size]
            scores = np.einsum("qd,qcd->qc", queries[start : start + len(block)], corpus[block])
            best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            all_scores.append(np.take_along_axis(scores, best, axis=1))
            all_rows.append(np.take_along_axis(block, best, axis=1))
        return np.concatenate(all_scores).astype("float32"), np.concatenate(all_rows)

    def recall_against_exact(self, queries, k):
        """Mean fraction of the exact top-`k` that `search` finds, over `(Q, D)` queries.

        Compares corpus rows, not ids (ids may repeat), with exact search over
        the kept float32 corpus: 1.0 for an exact index. Use it on a sample of
        real queries to tune `ef_search`, `nprobe` or `rerank`.
        """
        queries = self._prepare("queries", queries)
        k = check_k("k", k, len(self), "embeddings in the index")
        _, rows = self._search_rows(queries, k)
        _, exact = top_k_search(
            queries, self.embeddings, k, self.query_batch_size, self.corpus_batch_size
        )
        found = [len(np.intersect1d(got, want)) for got, want in zip(rows, exact, strict=True)]
        return float(np.mean(found) / k)

    def get_config(self):
        return {
            "similarity": self.similarity,
            "method": self.method,
            "query_batch_size": self.query_batch_size,
            "corpus_batch_size": self.corpus_batch_size,
            **self.options,
            "rerank": self.rerank,
            "keep_embeddings": self.keep_embeddings,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save(self, path):
        """Writes the corpus, ids, config and faiss structure to one `.npz` file.

        An approximate index is built first, so that `load` does not rebuild
        it. The file is written aside and renamed into place, so a kill during
        `save` leaves the previous file at `path` intact.
        """
        arrays = {"ids": self.ids, "config": np.array(json.dumps(self.get_config()))}
        if self.keep_embeddings:
            arrays["embeddings"] = self.embeddings
        if self.method != "exact":
            arrays["faiss_index"] = _approximate.serialize(self._built())
        with atomic_file(path) as new, open(new, "wb") as file:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, path):
        """Restores an index written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            index = cls.from_config(json.loads(str(data["config"])))
            index._ids = [data["ids"]]
            index._num_rows = len(data["ids"])
            if index.keep_embeddings:
                index._parts = [data["embeddings"]]
                index._dim = index._parts[0].shape[1]
            if index.method != "exact":
                index._structure = _approximate.deserialize(index.method, data["faiss_index"])
                index._dim = index._structure.d
        return index
