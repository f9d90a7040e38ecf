"""The towers an export serves: in-graph preprocessing, encoder, head, normalization.

A `Tower` is what one input modality needs in the SavedModel: the served input
spec, an `embed(inputs, training)` function made of TensorFlow ops only, the
Keras variables it reads (exported as plain `tf.Variable` lists, never as the
Keras objects: see `export_encoder`) and the TensorFlow resources (lookup
tables of the tokenizer) that must travel with it.
"""

import dataclasses
import os
import tempfile

import keras
import tensorflow as tf

from keras_contrastive.lora import merge_lora as merged
from keras_contrastive.lora._layers import adapted
from keras_contrastive.models import ContrastiveModel
from keras_contrastive.models.contrastive_model import takes_strings
from keras_contrastive.ops.similarity import l2_normalize


@dataclasses.dataclass
class Tower:
    name: str  # "image" or "text"
    input_spec: tf.TensorSpec
    embed: object  # (inputs, training) -> (N, D) float32
    layers: list  # the Keras layers whose variables `embed` reads
    resources: list = dataclasses.field(default_factory=list)

    @property
    def variables(self):
        """The distinct `tf.Variable`s under the Keras variables of `layers`."""
        found = {}
        for layer in self.layers:
            for variable in layer.variables:
                found.setdefault(id(variable.value), variable)
        return list(found.values())


def image_tower(model, image_size=None, input_signature=None, normalize=True, merge_lora=True):
    """Float32 images of any size -> resized -> encoder -> head -> embeddings."""
    encoder, head = _image_parts(model)
    spec = _image_spec(encoder, input_signature)
    size = tuple(image_size) if image_size is not None else tuple(spec.shape[1:3])
    if None in size:
        raise ValueError(
            "The encoder accepts images of any size: pass `image_size=(height, width)` "
            f"to resize to in the graph. Received: image_size={image_size}"
        )
    example = tf.zeros((1, *size, spec.shape[3]), spec.dtype)
    _build(encoder, head, example)
    if merge_lora:
        encoder, head = _merged_parts(encoder, head, example)
    served = tf.TensorSpec([None, None, None, spec.shape[3]], tf.float32)

    def embed(images, training=False):
        images = tf.ensure_shape(images, served.shape)  # also when the rank is unknown
        x = encoder(tf.cast(tf.image.resize(images, size), spec.dtype), training=training)
        x = x if head is None else head(x, training=training)
        return _finish(x, normalize)

    return Tower("image", served, embed, [layer for layer in (encoder, head) if layer])


def text_tower(model, text_preprocessor=None, normalize=True, merge_lora=True):
    """Raw strings -> in-graph tokenization -> encoder -> head -> embeddings."""
    preprocessor, encoder, head = _text_parts(model, text_preprocessor)
    tokenizes = preprocessor is None
    if tokenizes:
        preprocessor = lambda texts: texts  # noqa: E731
    example = preprocessor(tf.constant(["a"]))
    _build(encoder, head, example)
    if merge_lora:
        encoder, head = _merged_parts(encoder, head, example)
    if tokenizes:  # the encoder tokenizes: track its tokenizer layers (no weights)
        resources = [layer for layer in encoder.layers if not layer.weights]
    else:
        resources = [preprocessor]

    def embed(texts, training=False):
        x = encoder(preprocessor(tf.ensure_shape(texts, [None])), training=training)
        x = x if head is None else head(x, training=training)
        return _finish(x, normalize)

    spec = tf.TensorSpec([None], tf.string)
    layers = [layer for layer in (encoder, head) if layer] + resources
    return Tower("text", spec, embed, layers, resources=resources)


def _finish(x, normalize):
    x = tf.cast(x, tf.float32)
    return l2_normalize(x) if normalize else x


def _image_parts(model):
    if not isinstance(model, ContrastiveModel):
        return model, None
    if model.encoder is not None:
        return model.encoder, None  # `embed` has no head, as SimCLR throws g away
    return model.image_encoder, model.image_head


def _text_parts(model, text_preprocessor):
    if isinstance(model, ContrastiveModel):
        if model.text_encoder is None:
            raise ValueError(
                "`modality='text'` needs a dual-encoder ContrastiveModel (with "
                "`text_encoder`). Received a two-view model: use modality='image'."
            )
        preprocessor = text_preprocessor or model.text_preprocessor
        encoder, head = model.text_encoder, model.text_head
    else:
        preprocessor, encoder, head = text_preprocessor, model, None
    if preprocessor is None and not takes_strings(encoder):
        raise ValueError(
            "A text export takes raw strings and needs a `kc.layers.TextPreprocessor` to "
            "tokenize them in the graph (or a text encoder that takes strings): pass "
            "`text_preprocessor=`. Received: "
            "text_preprocessor=None"
        )
    return preprocessor, encoder, head


def _image_spec(encoder, input_signature):
    """The encoder's `(N, H, W, C)` input spec, from the encoder or `input_signature`."""
    if input_signature is not None:
        if not isinstance(input_signature, tf.TensorSpec):
            raise TypeError(
                "`input_signature` must be a tf.TensorSpec((None, height, width, channels), "
                f"dtype). Received: input_signature={input_signature!r}"
            )
        spec = input_signature
    else:
        inputs = getattr(encoder, "inputs", None) if encoder.built else None
        if not inputs or len(inputs) != 1:
            raise ValueError(
                f"Cannot tell the input shape of the encoder {encoder.name!r}: it was never "
                "built, or takes several inputs. Call the model once on a batch of images "
                "(e.g. `model.embed(images[:1])`), or pass "
                "`input_signature=tf.TensorSpec((None, height, width, channels), 'float32')`."
            )
        spec = tf.TensorSpec(inputs[0].shape, inputs[0].dtype)
    if spec.shape.rank != 4 or spec.shape[3] is None:
        raise ValueError(
            "An image encoder must take (batch, height, width, channels) images with a "
            f"known number of channels. Received input shape: {tuple(spec.shape)}"
        )
    return spec


def _build(encoder, head, example):
    """Creates any missing variables with one eager inference call (not in the graph)."""
    x = encoder(example, training=False)
    if head is not None:
        head(x, training=False)


def _merged_parts(encoder, head, example):
    """`encoder` and `head`, each replaced by a merged copy if it has LoRA layers."""
    features = encoder(example, training=False)
    copy = _merged_copy(encoder, example)
    return copy, None if head is None else _merged_copy(head, features)


def _merged_copy(part, example):
    """A copy of `part` with its LoRA adapters merged into the kernels; `part` if none.

    The copy is rebuilt from what Keras saves, which holds each adapted kernel
    merged (`save_own_variables` writes `W + (alpha / rank) A B`): a `.keras`
    archive for a model, so that its assets (a tokenizer's vocabulary) come
    too, the config and weights for a layer; what LoRA the config re-creates
    (a `Dense`'s `lora_rank`) is then merged away, with zero factors. The
    user's model is not touched.
    """
    if not adapted(part):
        return part
    with tempfile.TemporaryDirectory() as directory:
        try:
            if isinstance(part, keras.Model):
                archive = os.path.join(directory, "part.keras")
                part.save(archive)
                copy = keras.saving.load_model(archive, compile=False)
            else:
                copy = keras.saving.deserialize_keras_object(
                    keras.saving.serialize_keras_object(part)
                )
                copy(example, training=False)  # builds what the config does not
                weights = os.path.join(directory, "merged.weights.h5")
                keras.saving.save_weights(part, weights)
                keras.saving.load_weights(copy, weights)
        except Exception as error:
            raise ValueError(
                f"Exporting the LoRA layers of {part.name!r} merged (`merge_lora=True`) copies "
                f"it through Keras saving, which failed: {error}. Register its classes "
                "with `keras.saving.register_keras_serializable`, merge the model yourself "
                "with `kc.lora.merge_lora`, or pass `merge_lora=False`."
            ) from error
    merged(copy)
    return copy
