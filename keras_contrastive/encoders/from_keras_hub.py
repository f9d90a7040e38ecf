"""`from_keras_hub`: a keras-hub backbone as an encoder or a dual-encoder tower."""

import keras
from keras import ops

from keras_contrastive.encoders.keras_hub_text_preprocessor import KerasHubTextPreprocessor
from keras_contrastive.encoders.masked_mean_pooling import MaskedMeanPooling
from keras_contrastive.ops._validation import check_int

TOWERS = ("image", "text")
# Backbone class -> {tower: poolings}; the first pooling of a tower is its default.
POOLINGS = {
    "ResNetBackbone": {"image": ("avg", "max")},
    "ViTBackbone": {"image": ("token", "avg")},
    "CLIPBackbone": {"image": ("token",), "text": ("eos",)},
    "SigLIPBackbone": {"image": ("map",), "text": ("last",)},
    "BertBackbone": {"text": ("pooled", "cls", "avg")},
}
# Text backbone -> the keras-hub preprocessor class a tokenizer is packed with.
_PREPROCESSORS = {
    "CLIPBackbone": "CLIPPreprocessor",
    "SigLIPBackbone": "SigLIPPreprocessor",
    "BertBackbone": "TextClassifierPreprocessor",
}


def from_keras_hub(
    backbone, tokenizer=None, tower=None, pooling=None, sequence_length=None, name=None
):
    """A keras-hub backbone as an encoder: images or raw strings to `(B, R)`.

    Returns a functional `keras.Model` built on the backbone's own layers
    (their weights are shared with `backbone`), for `kc.ContrastiveModel`'s
    `encoder=` or its `image_encoder=` / `text_encoder=` towers. It trains
    with `fit`, saves to `.keras` and exports with `kc.export.export_encoder`;
    a text tower given a `tokenizer` tokenizes inside the model, so it and its
    SavedModel take raw `tf.string` texts. The representation follows the
    backbone, as its keras-hub tasks and `get_*_embeddings` compute it; per
    backbone (its towers), the `pooling` choices, the default first:

    - `ResNetBackbone` (`"image"`): `"avg"`, `"max"`: the last feature map,
      pooled (as `ResNetImageClassifier`).
    - `ViTBackbone` (`"image"`): `"token"` (the class token, as
      `ViTImageClassifier`), `"avg"` (the mean token; the only choice without
      a class token).
    - `CLIPBackbone` (`"image"`, `"text"`): `"token"` and `"eos"`, CLIP's
      `get_vision_embeddings` / `get_text_embeddings`: the class token, or the
      end token (the highest token id), through `vision_projection` /
      `text_projection`.
    - `SigLIPBackbone` (`"image"`, `"text"`): `"map"` and `"last"`, SigLIP's
      embeddings: the vision encoder's attention-pooling head, or the text
      encoder's last token and head.
    - `BertBackbone` (`"text"`): `"pooled"` (`pooled_output`, the `[CLS]`
      state through BERT's pooler, as `BertTextClassifier`), `"cls"` (the raw
      `[CLS]` state), `"avg"` (the mean of the real tokens).

    For pretrained weights on disk (a Kaggle or Hugging Face preset directory
    downloaded beforehand, or a preset already in the cache), pass
    `keras_hub.models.Backbone.from_preset(path)` and
    `keras_hub.models.Tokenizer.from_preset(path)`. Images are fed as the
    backbone expects them: a preset's `keras_hub.layers.ImageConverter` holds
    its scaling (apply it in `tf.data` or an augmenter). keras-hub is an
    optional dependency: `pip install "keras-contrastive[hub]"`.

    String ops do not compile with XLA: a tower that tokenizes turns
    `jit_compile="auto"` off. To train with XLA, build the tower with
    `tokenizer=None` and map the keras-hub preprocessor over the dataset.
    SentencePiece tokenizers (SigLIP's): seed with `keras.utils.set_random_seed`
    before building them, not after: `tf.random.set_seed` resets TensorFlow's
    kernel cache, which holds the SentencePiece model (tensorflow/text#570).

    Args:
        backbone: a `keras_hub.models` `ResNetBackbone`, `ViTBackbone`,
            `CLIPBackbone`, `SigLIPBackbone` or `BertBackbone` (or a
            subclass).
        tokenizer: text towers: `None` (the model takes the backbone's token
            inputs, e.g. `{"token_ids": ...}`), a keras-hub `Tokenizer` (packed
            with the backbone's preprocessor: `BertTextClassifierPreprocessor`,
            `CLIPPreprocessor`, `SigLIPPreprocessor`), or such a
            `Preprocessor` itself. Defaults to `None`.
        tower: `"image"`, `"text"`, or `None`: the backbone's only tower, or
            for CLIP and SigLIP `"text"` when a `tokenizer` is given, else
            `"image"`. Defaults to `None`.
        pooling: str or `None` (the backbone's default), see above.
            Defaults to `None`.
        sequence_length: int >= 2 or `None`, the tokens per text when
            `tokenizer` is a `Tokenizer`. Defaults to `None` (the backbone's
            `max_sequence_length`).
        name: str or `None`, the model name. Defaults to `None`
            (`"{backbone.name}_{tower}"`).

    Returns:
        A functional `keras.Model` mapping `(B, H, W, C)` images, `(B,)`
        strings or the backbone's token inputs to `(B, R)`.

    Example:

    >>> import keras_hub
    >>> backbone = keras_hub.models.ResNetBackbone(
    ...     input_conv_filters=[64], input_conv_kernel_sizes=[3],
    ...     stackwise_num_filters=[64], stackwise_num_blocks=[1],
    ...     stackwise_num_strides=[1], block_type="basic_block", image_shape=(16, 16, 3),
    ... )
    >>> encoder = kc.encoders.from_keras_hub(backbone)
    >>> encoder(np.zeros((2, 16, 16, 3))).shape  # (2, 64)
    >>> bert = keras_hub.models.BertBackbone(
    ...     vocabulary_size=7, num_layers=1, num_heads=1, hidden_dim=8,
    ...     intermediate_dim=8, max_sequence_length=8,
    ... )
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]
    >>> tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab)
    >>> text_encoder = kc.encoders.from_keras_hub(bert, tokenizer=tokenizer)
    >>> text_encoder(tf.constant(["a cat"])).shape  # (1, 8)

    References:
        - Radford et al., 2021. "Learning Transferable Visual Models From
          Natural Language Supervision" (CLIP). https://arxiv.org/abs/2103.00020
        - Zhai et al., 2023. "Sigmoid Loss for Language Image Pre-Training"
          (SigLIP). https://arxiv.org/abs/2303.15343
    """
    kind = _backbone_kind(backbone)
    tower = _tower(kind, tower, tokenizer)
    poolings = POOLINGS[kind][tower]
    if kind == "ViTBackbone" and not backbone.use_class_token:
        poolings = ("avg",)
    if pooling is None:
        pooling = poolings[0]
    elif pooling not in poolings:
        raise ValueError(
            f"`pooling` for the {tower} tower of a {kind} must be one of {list(poolings)}. "
            f"Received: pooling={pooling!r}"
        )
    if tower == "image":
        if tokenizer is not None or sequence_length is not None:
            raise ValueError(
                "`tokenizer` and `sequence_length` apply to text towers only. Received: "
                f"tower='image', tokenizer={type(tokenizer).__name__}, "
                f"sequence_length={sequence_length!r}"
            )
        inputs, outputs = _image_tower(backbone, kind, pooling)
    else:
        inputs, outputs = _text_tower(backbone, kind, pooling, tokenizer, sequence_length)
    return keras.Model(inputs, outputs, name=name or f"{backbone.name}_{tower}")


def _backbone_kind(backbone):
    """The name of the supported keras-hub backbone class `backbone` is an instance of."""
    import keras_hub

    for kind in POOLINGS:
        if isinstance(backbone, getattr(keras_hub.models, kind)):
            return kind
    raise TypeError(
        f"`backbone` must be a keras_hub.models backbone of one of {list(POOLINGS)}. "
        f"Received: backbone={type(backbone).__name__}"
    )


def _tower(kind, tower, tokenizer):
    towers = tuple(POOLINGS[kind])
    if tower is None:
        if len(towers) == 1:
            return towers[0]
        return "text" if tokenizer is not None else "image"
    if tower not in towers:
        raise ValueError(
            f"`tower` for a {kind} must be one of {list(towers)} (or None). "
            f"Received: tower={tower!r}"
        )
    return tower


def _image_tower(backbone, kind, pooling):
    if kind in ("CLIPBackbone", "SigLIPBackbone"):
        images = keras.Input(backbone.vision_encoder.image_shape, name="images")
        return images, backbone.get_vision_embeddings(images)
    images = keras.Input(backbone.image_shape, name="images")
    x = backbone(images)
    if kind == "ResNetBackbone":
        pool = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
        return images, pool[pooling](backbone.data_format, name="pool")(x)
    return images, x[:, 0] if pooling == "token" else ops.mean(x, axis=1)


def _text_tower(backbone, kind, pooling, tokenizer, sequence_length):
    encoder = backbone if kind == "BertBackbone" else backbone.text_encoder
    if tokenizer is None:
        if sequence_length is not None:
            raise ValueError(
                "`sequence_length` needs a `tokenizer` (without one the model takes token "
                f"ids). Received: sequence_length={sequence_length!r}, tokenizer=None"
            )
        inputs = {
            key: keras.Input((None,), dtype=tensor.dtype, name=key)
            for key, tensor in encoder.input.items()
        }
        tokens = inputs
    else:
        preprocessor = _preprocessor(kind, tokenizer, sequence_length, encoder)
        inputs = keras.Input((), dtype="string", name="text")
        tokens = KerasHubTextPreprocessor(preprocessor, name="preprocessor")(inputs)
    if kind == "CLIPBackbone":
        return inputs, backbone.get_text_embeddings(tokens["token_ids"])
    if kind == "SigLIPBackbone":
        return inputs, backbone.get_text_embeddings(tokens["token_ids"])
    outputs = backbone({key: tokens[key] for key in encoder.input})
    if pooling == "pooled":
        return inputs, outputs["pooled_output"]
    sequence = outputs["sequence_output"]
    if pooling == "cls":
        return inputs, sequence[:, 0]
    return inputs, MaskedMeanPooling(name="pool")(sequence, padding_mask=tokens["padding_mask"])


def _preprocessor(kind, tokenizer, sequence_length, encoder):
    """`tokenizer` packed with the backbone's keras-hub preprocessor (or checked as one)."""
    import keras_hub

    preprocessor_cls = getattr(keras_hub.models, _PREPROCESSORS[kind])
    if isinstance(tokenizer, keras_hub.models.Preprocessor):
        if not isinstance(tokenizer, preprocessor_cls):
            raise TypeError(
                f"A preprocessor for a {kind} must be a keras_hub.models."
                f"{preprocessor_cls.__name__}. Received: tokenizer={type(tokenizer).__name__}"
            )
        if sequence_length is not None:
            raise ValueError(
                "`sequence_length` applies to a Tokenizer; a Preprocessor has its own "
                f"(`preprocessor.sequence_length = {sequence_length}`). "
                f"Received: sequence_length={sequence_length!r}"
            )
        return tokenizer
    if not isinstance(tokenizer, keras_hub.tokenizers.Tokenizer):
        raise TypeError(
            "`tokenizer` must be a keras_hub Tokenizer or Preprocessor (or None). "
            f"Received: tokenizer={type(tokenizer).__name__}"
        )
    maximum = encoder.max_sequence_length
    if sequence_length is None:
        sequence_length = maximum
    check_int("sequence_length", sequence_length, min=2)
    if sequence_length > maximum:
        raise ValueError(
            f"`sequence_length` must be at most the backbone's max_sequence_length={maximum}. "
            f"Received: sequence_length={sequence_length}"
        )
    if kind == "BertBackbone":
        preprocessor_cls = keras_hub.models.BertTextClassifierPreprocessor
    return preprocessor_cls(tokenizer, sequence_length=sequence_length)
