"""Keras layers: two-view augmentation, text preprocessing, projection heads, MoCo keys."""

from keras_contrastive.layers.key_queue import KeyQueue
from keras_contrastive.layers.l2_normalize import L2Normalize
from keras_contrastive.layers.logit_scale import LogitScale
from keras_contrastive.layers.momentum_encoder import MomentumEncoder
from keras_contrastive.layers.multi_view import MultiView
from keras_contrastive.layers.projection_head import ProjectionHead
from keras_contrastive.layers.prototypes import Prototypes
from keras_contrastive.layers.sigmoid_logit_scale import SigmoidLogitScale
from keras_contrastive.layers.simclr_augmentation import SimCLRAugmentation
from keras_contrastive.layers.text_augmentation import TextAugmentation
from keras_contrastive.layers.text_preprocessor import TextPreprocessor
