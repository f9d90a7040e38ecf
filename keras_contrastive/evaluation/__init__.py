"""Evaluation of representations: linear probe, kNN, zero-shot, retrieval, search, plots.

`EmbeddingIndex` searches exactly, or approximately with faiss (`method="hnsw"`
or `"ivf"`, the optional extra `index`).

Every tool works on any encoder (a callable `keras.Model`) or on arrays of
embeddings. Accuracies are returned as dicts of floats in `[0, 1]`
(`{"top1": ..., "top5": ...}`). The plotting functions live in
`keras_contrastive.evaluation.plots` and are exported here; they import
matplotlib only when called.
"""

from keras_contrastive.evaluation.embedding_index import EmbeddingIndex
from keras_contrastive.evaluation.knn import knn_accuracy
from keras_contrastive.evaluation.linear_probe import linear_probe
from keras_contrastive.evaluation.plots import (
    plot_embeddings,
    plot_retrieval,
    plot_similarity_matrix,
)
from keras_contrastive.evaluation.retrieval import retrieval_recall
from keras_contrastive.evaluation.retrieval_metrics import retrieval_metrics
from keras_contrastive.evaluation.zero_shot_classifier import ZeroShotClassifier
