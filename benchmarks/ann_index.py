"""Approximate vs exact `EmbeddingIndex`: build time, memory, queries/s and recall@10.

Clustered synthetic embeddings (D = 128): 1,000 cluster centres drawn from
N(0, I), each row a centre plus anisotropic noise (a random rotation of
N(0, diag(s)) with s_j = 0.6 / sqrt(1 + j), so most of the spread lies in a few
dozen directions, as in learned embeddings); cosine similarity; 1,000 fresh
queries from the same distribution; k = 10. For every corpus size the rows,
one per index configuration, are measured in one run:

- build: `add` of the whole corpus plus the first search of one query (when
  faiss builds its structure: HNSW's graph, IVF's k-means);
- memory: `index.nbytes` (the float32 corpus when kept, the faiss structure
  as `faiss.serialize_index` writes it, the ids);
- queries/s: 1,000 queries in one `search` call, best of 3;
- recall@10: the fraction of the exact top-10 found, as
  `index.recall_against_exact` counts it (the ids are the row positions).

    python benchmarks/ann_index.py                  # N = 100k and 1M (~15 min on 2 cores)
    python benchmarks/ann_index.py --sizes 100000   # ~1 min
    python benchmarks/ann_index.py --quick          # N = 20k, for a smoke run
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _cpu import cpu  # noqa: E402

from keras_contrastive.evaluation import EmbeddingIndex  # noqa: E402
from keras_contrastive.evaluation._approximate import import_faiss  # noqa: E402

DIM, CLUSTERS, QUERIES, K = 128, 1000, 1000, 10
SPREAD = 2.0  # noise scale: clusters stay apart, so a query's neighbours share its cluster
# (label, EmbeddingIndex options, search-time option sweep)
CONFIGS = (
    ("exact", {}, None),
    ("HNSW M=32", {"method": "hnsw", "keep_embeddings": False}, ("ef_search", (16, 64, 128, 256))),
    ("IVF-Flat", {"method": "ivf", "keep_embeddings": False}, ("nprobe", (4, 16, 64))),
    ("IVF-PQ m=16", {"method": "ivf", "pq_m": 16, "keep_embeddings": False}, ("nprobe", (16,))),
    ("IVF-PQ m=16 rerank 4", {"method": "ivf", "pq_m": 16, "rerank": 4}, ("nprobe", (16,))),
)


def clustered(rows, seed):
    """`rows` clustered embeddings; the same centres and noise shape for every seed."""
    structure = np.random.default_rng(0)
    centres = structure.normal(size=(CLUSTERS, DIM)).astype("float32")
    rotation, _ = np.linalg.qr(structure.normal(size=(DIM, DIM)))
    scale = (SPREAD / np.sqrt(1 + np.arange(DIM))).astype("float32")
    rng = np.random.default_rng(seed)
    out = np.empty((rows, DIM), "float32")
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        noise = rng.normal(size=(n, DIM)).astype("float32") * scale
        out[start : start + n] = centres[rng.integers(CLUSTERS, size=n)] + noise @ rotation.T
    return out


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run(size, queries):
    corpus = clustered(size, seed=1)
    rows_out, exact_rows = [], None
    for label, options, sweep in CONFIGS:
        index = EmbeddingIndex(**options)
        start = time.perf_counter()
        index.add(corpus)
        index.search(queries[:1], K)
        build = time.perf_counter() - start
        memory = index.nbytes
        for value in sweep[1] if sweep else (None,):
            if sweep:
                index.options[sweep[0]] = value
            seconds, (rows, _) = best_of(lambda index=index: index.search(queries, K))
            exact_rows = rows if label == "exact" else exact_rows
            found = [len(np.intersect1d(a, b)) for a, b in zip(rows, exact_rows, strict=True)]
            name = label if not sweep else f"{label}, {sweep[0]}={value}"
            rows_out.append((name, build, memory, QUERIES / seconds, np.mean(found) / K))
            print(
                f"  N={size:>9,}  {name:<36} build {build:7.1f} s  memory {memory / 2**20:7.0f} MiB"
                f"  {QUERIES / seconds:9.0f} queries/s  recall@10 {np.mean(found) / K:.3f}",
                flush=True,
            )
        del index
    return rows_out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="N = 20,000 only")
    args = parser.parse_args()
    sizes = [20_000] if args.quick else args.sizes
    faiss = import_faiss("hnsw")
    print(
        f"CPU: {cpu()}; faiss {faiss.__version__} with {faiss.omp_get_max_threads()} threads; "
        f"D={DIM}, {CLUSTERS} clusters, {QUERIES} queries, k={K}, cosine",
        flush=True,
    )
    queries = clustered(QUERIES, seed=2)
    table = {size: run(size, queries) for size in sizes}
    print("\n| N | index | build s | memory MiB | queries/s | vs exact | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    for size, rows in table.items():
        exact_qps = rows[0][3]
        for name, build, memory, qps, recall in rows:
            print(
                f"| {size:,} | {name} | {build:.1f} | {memory / 2**20:.0f} | {qps:,.0f} | "
                f"{qps / exact_qps:.1f}x | {recall:.3f} |"
            )


if __name__ == "__main__":
    main()
