"""Keras metrics for contrastive training: `keras.metrics.Metric` subclasses."""

from keras_contrastive.metrics.contrastive_accuracy import ContrastiveAccuracy
from keras_contrastive.metrics.embedding_std import EmbeddingStd
