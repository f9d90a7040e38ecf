"""keras_contrastive.export: SavedModels for serving, TF Hub reuse and Keras 3 fine-tuning.

Exported SavedModels hold TensorFlow ops and variables only and load without
keras_contrastive (text models: `import tensorflow_text` first).
"""

from keras_contrastive.export.export_encoder import export_encoder
from keras_contrastive.export.export_index import export_index
from keras_contrastive.export.saved_model_encoder import SavedModelEncoder
