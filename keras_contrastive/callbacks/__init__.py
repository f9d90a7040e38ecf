"""Keras callbacks that watch the representation during `fit`."""

from keras_contrastive.callbacks.embedding_projector import EmbeddingProjector
from keras_contrastive.callbacks.knn_monitor import KNNMonitor
