"""The faiss structures behind `EmbeddingIndex(method="hnsw" | "ivf")`.

faiss (the optional extra `index`: `pip install "keras-contrastive[index]"`) is
imported when an approximate index is created, never at package import. Every
structure scores by inner product (`faiss.METRIC_INNER_PRODUCT`); cosine
indexes are handed L2-normalized rows, as the exact index is. Rows are
numbered 0, 1, ... in the order they were added; `EmbeddingIndex` maps these
positions to its ids.

Defaults (faiss wiki, "Guidelines to choose an index" and "Faiss indexes"):
- HNSW (Malkov and Yashunin, TPAMI 2018): `M = 32` links per node, as
  faiss's `"HNSW32"`; `efConstruction = 40`, faiss's default; `efSearch`
  (faiss's default is 16) is raised to 128 here, which measured 0.95+
  recall@10 on 1M clustered vectors (benchmarks/RESULTS.md), and is never
  below the number of results asked for.
- IVF (Jégou et al., TPAMI 2011): `nlist = 4·sqrt(N)` coarse centroids, the
  low end of the wiki's 4·sqrt(N) to 16·sqrt(N), and at most N / 39 so that
  k-means has the 39 training points per centroid faiss asks for; `nprobe`
  (faiss's default is 1) is 16 here. Product quantization is off unless
  `pq_m` is given: `pq_m` sub-vectors of `pq_bits = 8` bits each (faiss's
  default), so a row costs `pq_m` bytes instead of `4·D`.
"""

import math
import warnings

import numpy as np

METHODS = ("exact", "hnsw", "ivf")
# The options of each approximate method and their defaults; `None` is
# resolved when the structure is built (nlist depends on the corpus size).
OPTIONS = {
    "hnsw": {"hnsw_m": 32, "ef_construction": 40, "ef_search": 128},
    "ivf": {"nlist": None, "nprobe": 16, "pq_m": None, "pq_bits": 8},
}
MIN_POINTS_PER_CENTROID = 39  # below this faiss warns that k-means is undertrained


def import_faiss(method):
    """The `faiss` module, or an `ImportError` naming the extra to install."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            f"EmbeddingIndex(method={method!r}) searches with faiss, which is not "
            'installed. Install the extra: `pip install "keras-contrastive[index]"` '
            "(or `pip install faiss-cpu`), or use method='exact'."
        ) from error
    return faiss


def default_nlist(num_rows):
    """`4·sqrt(N)` IVF lists, at most `N / 39` (and at least 1)."""
    return max(1, min(round(4 * math.sqrt(num_rows)), num_rows // MIN_POINTS_PER_CENTROID))


def build(method, options, corpus):
    """A trained faiss structure holding `corpus` (`(N, D)` float32) in row order."""
    faiss = import_faiss(method)
    num_rows, dim = corpus.shape
    metric = faiss.METRIC_INNER_PRODUCT
    if method == "hnsw":
        structure = faiss.IndexHNSWFlat(dim, options["hnsw_m"], metric)
        structure.hnsw.efConstruction = options["ef_construction"]
    else:
        nlist = options["nlist"] or default_nlist(num_rows)
        if nlist > num_rows:
            raise ValueError(
                f"IVF needs at least `nlist` = {nlist} embeddings to train its centroids. "
                f"Received {num_rows}: add more, lower `nlist`, or use method='exact'."
            )
        pq_m, pq_bits = options["pq_m"], options["pq_bits"]
        if pq_m is not None and num_rows < 2**pq_bits:
            raise ValueError(
                f"IVF-PQ with pq_bits={pq_bits} needs at least 2**pq_bits = {2**pq_bits} "
                f"embeddings to train its codebooks. Received {num_rows}: add more, lower "
                "`pq_bits`, or leave `pq_m=None` for IVF without quantization."
            )
        quantizer = faiss.IndexFlatIP(dim)
        if pq_m is None:
            structure = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
        else:
            structure = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, pq_bits, metric)
            _check_training_size("PQ codebooks", 2**pq_bits, "`pq_bits`", num_rows)
            structure.pq.cp.min_points_per_centroid = 1  # warned once above, not per sub-vector
        if nlist > 1:
            _check_training_size("IVF centroids", nlist, "`nlist`", num_rows)
        structure.cp.min_points_per_centroid = 1
        structure.train(corpus)  # faiss's Python wrapper keeps `quantizer` alive
    structure.add(corpus)
    return structure


def _check_training_size(what, clusters, knob, num_rows):
    """Warns once when k-means has fewer than 39 training rows per cluster."""
    if num_rows < MIN_POINTS_PER_CENTROID * clusters:
        warnings.warn(
            f"The {what} ({clusters} clusters) are trained on {num_rows} embeddings, fewer "
            f"than the {MIN_POINTS_PER_CENTROID} per cluster faiss recommends: recall may "
            f"suffer. Add more embeddings before the first search, or lower {knob}.",
            stacklevel=6,  # the caller of `search`
        )


def search(structure, options, queries, k):
    """`(scores, rows)`, `(Q, k)`, best first; every row is a corpus position.

    A query whose probed IVF lists hold fewer than `k` vectors (or whose HNSW
    beam found fewer) comes back with `-1` rows from faiss; those queries are
    searched again over every list (or with a beam as wide as the corpus), so
    the result always has `k` real rows.
    """
    scores, rows = _search(structure, options, queries, k)
    short = np.flatnonzero(np.any(rows < 0, axis=1))
    if short.size:
        widest = (
            {"ef_search": structure.ntotal}
            if "ef_search" in options
            else {"nprobe": structure.nlist}
        )
        scores[short], rows[short] = _search(structure, {**options, **widest}, queries[short], k)
        if np.any(rows < 0):
            raise RuntimeError(
                f"faiss returned fewer than k={k} results even when searching the whole "
                "index; please report this with the index's configuration."
            )
    return scores, rows


def _search(structure, options, queries, k):
    if "ef_search" in options:
        structure.hnsw.efSearch = max(options["ef_search"], k)
    else:
        structure.nprobe = min(options["nprobe"], structure.nlist)
    scores, rows = structure.search(np.ascontiguousarray(queries), k)
    return scores.astype("float32", copy=False), rows.astype("int64", copy=False)


def serialize(structure):
    """The structure as a `uint8` array, for `np.savez`."""
    import faiss

    return faiss.serialize_index(structure)


def deserialize(method, array):
    """The structure `serialize` wrote."""
    return import_faiss(method).deserialize_index(np.asarray(array, dtype="uint8"))
