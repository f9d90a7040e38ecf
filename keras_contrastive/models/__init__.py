"""ContrastiveModel, the training step over a `kc.methods.Method`, and GradientCache."""

from keras_contrastive.models.contrastive_model import ContrastiveModel
from keras_contrastive.models.gradient_cache import GradientCache
