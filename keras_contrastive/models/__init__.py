"""ContrastiveModel: two-view, supervised and dual-encoder training with `model.fit`."""

from keras_contrastive.models.contrastive_model import ContrastiveModel
