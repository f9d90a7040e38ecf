"""Offline data: scikit-learn's digits, generated captions, image folders, local TFDS copies.

Nothing here downloads. Images are float32 in [0, 1] everywhere.
"""

from keras_contrastive.datasets.captions import (
    TRAIN_TEMPLATES,
    ZERO_SHOT_TEMPLATES,
    digit_captions,
    image_text_dataset,
)
from keras_contrastive.datasets.digits import DIGIT_NAMES, Split, digits
from keras_contrastive.datasets.image_folder import image_folder
from keras_contrastive.datasets.tf_data import to_dataset
from keras_contrastive.datasets.tfds_images import tfds_images, tfds_split
