"""keras_contrastive: contrastive representation learning for Keras 3 on TensorFlow.

Example:

>>> import keras_contrastive as kc
>>> loss = kc.losses.NTXentLoss(temperature=0.1)
"""

import keras as _keras

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_contrastive needs the TensorFlow backend of Keras 3 (it uses "
        "tf.distribute, tf.data, tensorflow-text and SavedModel). "
        f"Received: KERAS_BACKEND={_keras.backend.backend()!r}. Set the "
        "environment variable KERAS_BACKEND=tensorflow before importing keras."
    )

from keras_contrastive import (  # noqa: E402
    callbacks,
    datasets,
    distribute,
    encoders,
    evaluation,
    export,
    layers,
    lora,
    losses,
    methods,
    metrics,
    models,
    ops,
)
from keras_contrastive.models import ContrastiveModel  # noqa: E402

__version__ = "0.1.0"
