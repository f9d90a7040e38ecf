"""Pure `keras.ops` building blocks: similarity, distances, masks, mining, softmax."""

from keras_contrastive.ops.chunked import map_row_chunks
from keras_contrastive.ops.hard_negatives import hard_negative_nll
from keras_contrastive.ops.masks import label_mask, off_diagonal_mask, positive_mask
from keras_contrastive.ops.mining import (
    batch_all_triplet_values,
    batch_hard_triplet_values,
    semi_hard_triplet_values,
)
from keras_contrastive.ops.similarity import (
    DISTANCES,
    cosine_similarity,
    l2_normalize,
    paired_distance,
    pairwise_distance,
    safe_sqrt,
)
from keras_contrastive.ops.softmax import (
    MASK_VALUE,
    masked_log_softmax,
    masked_logits,
    masked_logsumexp,
    multi_positive_cross_entropy,
)
