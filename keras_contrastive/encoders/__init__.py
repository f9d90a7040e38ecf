"""keras_contrastive.encoders."""
