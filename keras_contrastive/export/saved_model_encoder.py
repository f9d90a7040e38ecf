"""`SavedModelEncoder`: an exported encoder as a fine-tunable Keras 3 layer."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SavedModelEncoder(keras.layers.Layer):
    """Loads a SavedModel written by `export_encoder` as a trainable Keras 3 layer.

    Calls the SavedModel's reusable `__call__(inputs, training)` (TF Hub's
    API) and wraps each of its restored `tf.Variable`s in a `keras.Variable`
    that shares it, so Keras optimizers update the very variables the
    restored function reads. (`keras.layers.TFSMLayer` instead copies them
    into new variables named like `"conv2d_kernel:0"`, which Keras 3.15
    optimizers refuse as scope names, and the copies never reach the graph.)

    The layer depends on keras and tensorflow only: where keras_contrastive is
    not installed, copy this file (or the shorter pattern in the README).
    Text SavedModels need `import tensorflow_text` before loading.

    Args:
        filepath: str, the SavedModel directory.
        trainable: bool, whether `fit` updates the encoder's weights. When
            `False` the encoder also runs in inference mode (batch
            normalization uses its moving statistics), as in
            `tensorflow_hub.KerasLayer`. Defaults to `True`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Shape:
        As served by the SavedModel: `(batch_size, height, width, channels)`
        float32 images or `(batch_size,)` strings to `(batch_size, dim)`.

    Example:

    >>> encoder = SavedModelEncoder("/tmp/encoder")
    >>> inputs = keras.Input((32, 32, 3))
    >>> model = keras.Model(inputs, keras.layers.Dense(10)(encoder(inputs)))

    References:
        - TensorFlow Hub, "Reusable SavedModels".
          https://www.tensorflow.org/hub/reusable_saved_models
    """

    def __init__(self, filepath, trainable=True, **kwargs):
        super().__init__(**kwargs)
        self.filepath = str(filepath)
        self._saved_model = tf.saved_model.load(self.filepath)
        trainable_ids = {id(v) for v in self._saved_model.trainable_variables}
        self.saved_weights = [
            keras.Variable(v, trainable=id(v) in trainable_ids, name=_weight_name(v))
            for v in self._saved_model.variables
        ]
        self.trainable = trainable  # after the weights exist, so that it freezes them
        self.built = True

    def call(self, inputs, training=False):
        return self._saved_model(inputs, training=bool(training) and self.trainable)

    def get_config(self):
        return {**super().get_config(), "filepath": self.filepath}


def _weight_name(variable):
    """`"conv1/kernel:0"` -> `"conv1_kernel"`: a valid Keras variable name."""
    return variable.name.split(":")[0].replace("/", "_")
