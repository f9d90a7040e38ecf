"""Keras callbacks that watch the representation during `fit`, and fault-tolerant backups."""

from keras_contrastive.callbacks.backup_and_restore import BackupAndRestore
from keras_contrastive.callbacks.embedding_projector import EmbeddingProjector
from keras_contrastive.callbacks.knn_monitor import KNNMonitor
