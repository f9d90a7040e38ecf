"""Cross-replica helpers: gather embeddings (with gradients) and replica-aware seeds."""

from keras_contrastive.distribute.collective_keys import isolate_collective_keys
from keras_contrastive.distribute.gather import (
    gather_candidates,
    global_sum,
    replica_context,
)
