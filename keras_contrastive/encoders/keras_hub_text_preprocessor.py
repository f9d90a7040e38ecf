"""`KerasHubTextPreprocessor`: raw strings to a keras-hub text backbone's inputs, in the graph."""

import weakref

import keras
import tensorflow as tf

# One tf.function per layer for eager calls, kept off the layer: a tf.function
# attribute would be tracked and saved with the layer in SavedModels.
_EAGER_PREPROCESS = weakref.WeakKeyDictionary()


@keras.saving.register_keras_serializable(package="keras_contrastive")
class KerasHubTextPreprocessor(keras.layers.Layer):
    """Runs a keras-hub text preprocessor on raw strings inside a Keras model.

    The text towers of `kc.encoders.from_keras_hub` start with this layer, so
    they map `tf.string` texts to embeddings: it calls `preprocessor` (a
    keras-hub `Preprocessor` holding the tokenizer and its packer) always on
    its TensorFlow path, also in eager calls, and returns the token inputs of
    the backbone. The output spec is declared rather than traced, so a
    `.keras` file rebuilds the model before the tokenizer's vocabulary is
    restored from its assets (keras-hub keeps vocabularies in assets, not in
    `get_config`). String ops do not compile with XLA: the layer sets
    `supports_jit = False`, so `compile(jit_compile="auto")` leaves XLA off.

    Args:
        preprocessor: a keras-hub text preprocessor: a
            `keras_hub.models.TextClassifierPreprocessor` (BERT-style, called
            on the strings), or a `CLIPPreprocessor` / `SigLIPPreprocessor`
            (called on `{"prompts": texts, "images": None}`).
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Shape:
        Input `(batch_size,)` or `(batch_size, 1)` `tf.string`; output a dict
        of `(batch_size, sequence_length)` tensors: `"token_ids"` int32,
        `"padding_mask"` bool, and `"segment_ids"` int32 for a
        `TextClassifierPreprocessor`.

    Example:

    >>> import keras_hub
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]
    >>> tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
    >>> layer = KerasHubTextPreprocessor(
    ...     keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=5)
    ... )
    >>> layer(tf.constant(["a cat"]))["token_ids"]  # [[2, 5, 6, 3, 0]]
    """

    def __init__(self, preprocessor, **kwargs):
        super().__init__(**kwargs)
        import keras_hub

        if not isinstance(preprocessor, keras_hub.models.Preprocessor):
            raise TypeError(
                "`preprocessor` must be a keras_hub.models.Preprocessor. "
                f"Received: preprocessor={preprocessor!r}"
            )
        self.preprocessor = preprocessor
        self._takes_prompts = not isinstance(
            preprocessor, keras_hub.models.TextClassifierPreprocessor
        )
        self._keys = ("token_ids", "padding_mask")
        if not self._takes_prompts:
            self._keys += ("segment_ids",)
        self.supports_jit = False
        self.built = True

    def _preprocess(self, texts):
        x = {"prompts": texts, "images": None} if self._takes_prompts else texts
        packed = self.preprocessor(x)
        return {key: packed[key] for key in self._keys}

    def call(self, texts):
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise TypeError(
                "`texts` must be a tf.string tensor of raw text. "
                f"Received: dtype={texts.dtype.name}"
            )
        if texts.shape.rank == 2:
            texts = tf.squeeze(texts, axis=1)
        if tf.executing_eagerly():
            # keras-hub runs eager calls on its pure-Python path (NumPy out);
            # traced, it takes the TensorFlow path that models and SavedModels use.
            if self not in _EAGER_PREPROCESS:
                layer = weakref.ref(self)  # the value must not keep its key alive
                _EAGER_PREPROCESS[self] = tf.function(
                    lambda texts: layer()._preprocess(texts), reduce_retracing=True
                )
            return _EAGER_PREPROCESS[self](texts)
        return self._preprocess(texts)

    def compute_output_spec(self, texts):
        shape = (texts.shape[0], self.preprocessor.sequence_length)
        dtypes = {"token_ids": "int32", "padding_mask": "bool", "segment_ids": "int32"}
        return {key: keras.KerasTensor(shape, dtype=dtypes[key]) for key in self._keys}

    def get_config(self):
        return {
            **super().get_config(),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)
