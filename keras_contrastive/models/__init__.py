"""keras_contrastive.models."""
