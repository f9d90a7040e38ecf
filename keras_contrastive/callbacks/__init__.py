"""Keras callbacks: watching the representation, mining hard negatives, fault-tolerant backups."""

from keras_contrastive.callbacks.backup_and_restore import BackupAndRestore
from keras_contrastive.callbacks.embedding_projector import EmbeddingProjector
from keras_contrastive.callbacks.hard_negative_miner import HardNegativeMiner
from keras_contrastive.callbacks.knn_monitor import KNNMonitor
