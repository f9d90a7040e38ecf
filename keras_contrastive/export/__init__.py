"""keras_contrastive.export."""
