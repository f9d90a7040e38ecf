"""`export_encoder`: a trained encoder as a SavedModel for serving and TF-Hub-style reuse."""

import tensorflow as tf

from keras_contrastive._atomic import atomic_directory
from keras_contrastive.export._towers import image_tower, text_tower
from keras_contrastive.ops._validation import check_bool, check_choice, check_positive

MODALITIES = ("image", "text", "dual")
SAVED_MODEL_FILE = "saved_model.pb"


def export_encoder(
    model_or_encoder,
    path,
    modality="image",
    normalize=True,
    input_signature=None,
    image_size=None,
    text_preprocessor=None,
    pixel_scale=1.0 / 255.0,
    merge_lora=True,
):
    """Writes an encoder as a SavedModel that serves embeddings and fine-tunes.

    The SavedModel holds TensorFlow ops and variables only: it loads with
    `tf.saved_model.load(path)` where keras_contrastive is not installed (a
    text export also needs `import tensorflow_text` first, for its tokenizer
    ops). It has:

    - **Signatures** (each returns `{"embedding": (N, D) float32}`, rows
      L2-normalized when `normalize=True`):
        - `embed_image(images)`: `(N, H, W, C)` float32 images of any size,
          in the range the encoder was trained on (`[0, 1]` for
          `kc.encoders.small_cnn` and `SimCLRAugmentation`); resized in the
          graph to `image_size` (bilinear).
        - `embed_image_uint8(images)`: `(N, H, W, C)` uint8 images, scaled by
          `pixel_scale` (`[0, 255] -> [0, 1]` by default), then as above.
        - `embed_text(texts)`: `(N,)` raw `tf.string` texts, tokenized in the
          graph by the model's `TextPreprocessor`.
        - `serving_default`: `embed_image` (modality `"image"` or `"dual"`)
          or `embed_text` (modality `"text"`).
    - **TF Hub's reusable SavedModel API**: `__call__(inputs, training=False)`
      (the `serving_default` computation, with `training=True` for
      fine-tuning: batch statistics, dropout), `variables`,
      `trainable_variables` (those `__call__` trains) and
      `regularization_losses` (the weight regularizers of those variables), so
      `tensorflow_hub.KerasLayer(path, trainable=True)` fine-tunes it in a
      tf-keras model, and `kc.export.SavedModelEncoder(path)` in Keras 3.

    **Overwriting is safe against a kill at any moment**: the SavedModel is
    written to a temporary sibling directory, fsynced, and renamed into place,
    so a reader of `path` sees the previous export or the new one, complete.
    Between the two renames that replace a directory `path` is missing for an
    instant; a process killed exactly then leaves the complete previous export
    as `.NAME.old-*` beside it, which the next export to `path` restores before
    writing. Leftover `.NAME.tmp-*` siblings of killed exports are removed
    then too. Run one export to a given `path` at a time.

    Only the variable lists are tracked, never the Keras model: a SavedModel
    that tracks the model restores a `__call__` whose gradients do not reach
    `trainable_variables` (measured with TF 2.21 and Keras 3.15).

    **LoRA** (`kc.lora.enable_lora`): by default the export serves merged
    kernels `W + (alpha / rank) A B` and holds no LoRA variables. The model
    is not changed: each tower part (encoder, head) with adapters is copied
    through its Keras config and its saved weights (Keras saves the merged
    kernel), and the copy is merged with `kc.lora.merge_lora`; so those
    parts must be serializable (`keras.saving.register_keras_serializable`).
    The copy's variables are all trainable except the normalization layers
    `enable_lora` froze. `merge_lora=False` exports the adapted layers as
    they are: `trainable_variables` are then the factors (and the biases
    with `train_bias`), so a TF-Hub `KerasLayer(path, trainable=True)` goes
    on training the adapter alone, at the cost of the extra matmuls and
    variables in serving.

    Args:
        model_or_encoder: a `kc.ContrastiveModel`, or an encoder (a built
            `keras.Model` or layer). Two-view models export `model.encoder`
            (as `model.embed`); dual-encoder models export their towers with
            heads (as `embed_image` / `embed_text`).
        path: directory to write the SavedModel to (local filesystem). An
            existing export there is replaced atomically (see above); an existing
            non-empty directory that is not a SavedModel raises `FileExistsError`.
        modality: `"image"` (default), `"text"` (a dual model's text tower,
            or an encoder of `TextPreprocessor` outputs with
            `text_preprocessor=`), or `"dual"` (both towers of a dual model
            in one SavedModel; `__call__` is the image tower).
        normalize: bool, L2-normalize the embeddings. Defaults to `True`.
        input_signature: optional `tf.TensorSpec((None, H, W, C), dtype)`, the
            image encoder's input, for an encoder that was never built or
            called. Defaults to `None` (read from the encoder).
        image_size: optional `(height, width)` images are resized to.
            Defaults to `None` (the encoder's input size).
        text_preprocessor: optional `kc.layers.TextPreprocessor`; defaults to
            the model's `text_preprocessor`.
        pixel_scale: float > 0, the factor of `embed_image_uint8`. Defaults to
            `1 / 255`.
        merge_lora: bool, export LoRA adapters merged into the kernels (see
            above). Defaults to `True`.

    Example:

    >>> import keras_contrastive as kc
    >>> encoder = kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8)
    >>> kc.export.export_encoder(encoder, "/tmp/encoder")
    >>> import tensorflow as tf
    >>> serve = tf.saved_model.load("/tmp/encoder").signatures["serving_default"]
    >>> serve(images=tf.zeros((2, 32, 32, 3)))["embedding"].shape  # (2, 32)

    References:
        - TensorFlow Hub, "Reusable SavedModels".
          https://www.tensorflow.org/hub/reusable_saved_models
    """
    check_choice("modality", modality, MODALITIES)
    check_positive("pixel_scale", pixel_scale)
    check_bool("merge_lora", merge_lora)
    towers = []
    if modality in ("image", "dual"):
        towers.append(
            image_tower(model_or_encoder, image_size, input_signature, normalize, merge_lora)
        )
    if modality in ("text", "dual"):
        towers.append(text_tower(model_or_encoder, text_preprocessor, normalize, merge_lora))
    root = reusable_module(towers[0], towers)
    signatures = {}
    for tower in towers:
        signatures.update(_signatures(tower, pixel_scale))
    signatures["serving_default"] = signatures[f"embed_{towers[0].name}"]
    with atomic_directory(path, marker=SAVED_MODEL_FILE) as new:
        tf.saved_model.save(root, new, signatures=signatures)


def reusable_module(tower, all_towers):
    """A trackable with TF Hub's reusable API over `tower`, tracking `all_towers`."""
    root = tf.train.Checkpoint()
    variables = [v for t in all_towers for v in t.variables]
    root.variables = [v.value for v in variables]
    root.trainable_variables = [v.value for v in tower.variables if v.trainable]
    root.regularization_losses = _regularization_losses(tower)
    root.resources = [resource for t in all_towers for resource in t.resources]

    @tf.function
    def call(inputs, training=False):
        return tower.embed(inputs, training=training)

    for training in (False, True):
        call.get_concrete_function(tower.input_spec, training=training)
    root.__call__ = call
    return root


def _regularization_losses(tower):
    losses = []
    for variable in tower.variables:
        regularizer = getattr(variable, "regularizer", None)
        if variable.trainable and regularizer is not None:
            losses.append(_penalty(regularizer, variable))
    return losses


def _penalty(regularizer, variable):
    loss = tf.function(lambda: regularizer(variable))
    loss.get_concrete_function()
    return loss


def _signatures(tower, pixel_scale):
    if tower.name == "text":

        @tf.function
        def embed_text(texts):
            return {"embedding": tower.embed(texts)}

        return {"embed_text": embed_text.get_concrete_function(tower.input_spec)}

    @tf.function
    def embed_image(images):
        return {"embedding": tower.embed(images)}

    @tf.function
    def embed_image_uint8(images):
        return {"embedding": tower.embed(tf.cast(images, tf.float32) * pixel_scale)}

    uint8_spec = tf.TensorSpec(tower.input_spec.shape, tf.uint8)
    return {
        "embed_image": embed_image.get_concrete_function(tower.input_spec),
        "embed_image_uint8": embed_image_uint8.get_concrete_function(uint8_spec),
    }
