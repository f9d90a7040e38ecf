"""Small reference encoders (functional `keras.Model`s) and the layers they are built from.

`from_keras_hub` adapts keras-hub backbones (an optional dependency, imported
only when called): `pip install "keras-contrastive[hub]"`.
"""

from keras_contrastive.encoders.from_keras_hub import from_keras_hub
from keras_contrastive.encoders.fused_batch_normalization import FusedBatchNormalization
from keras_contrastive.encoders.keras_hub_text_preprocessor import KerasHubTextPreprocessor
from keras_contrastive.encoders.masked_mean_pooling import MaskedMeanPooling
from keras_contrastive.encoders.position_embedding import PositionEmbedding
from keras_contrastive.encoders.resnet import resnet
from keras_contrastive.encoders.small_cnn import small_cnn
from keras_contrastive.encoders.text_transformer import text_transformer
from keras_contrastive.encoders.transformer_encoder_block import TransformerEncoderBlock
