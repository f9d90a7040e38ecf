"""`kc.encoders.from_keras_hub`: keras-hub backbones as encoders and dual-encoder towers.

Every backbone is built from a tiny config with random weights and every tokenizer from
an in-memory vocabulary: nothing is downloaded. Each backbone trains one `fit` step in a
`ContrastiveModel`, survives a `.keras` round trip and serves the same embeddings from its
SavedModel, in one test per backbone (string towers trace their tokenizer for each of
these, the slow part, so no step is repeated).
"""

import io
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrastive as kc

keras_hub = pytest.importorskip("keras_hub")
sentencepiece = pytest.importorskip("sentencepiece")

IMAGE_SHAPE = (16, 16, 3)
BATCH = 8
CAPTIONS = ["a red square", "a blue circle", "two red circles", "one blue square"]
WORDS = ["a", "red", "blue", "square", "circle", "circles", "two", "one"]
SEQUENCE_LENGTH = 8


def l2(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def images(n=BATCH, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, *IMAGE_SHAPE)).astype("float32")


def captions(n=BATCH):
    return np.array([CAPTIONS[i % len(CAPTIONS)] for i in range(n)])


# ---------------------------------------------------------------- tiny backbones
def resnet_backbone():
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=IMAGE_SHAPE,
    )


def vit_backbone():
    return keras_hub.models.ViTBackbone(
        image_shape=IMAGE_SHAPE, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )


def bert_tokenizer():
    return keras_hub.models.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    )


def bert_backbone():
    return keras_hub.models.BertBackbone(
        vocabulary_size=5 + len(WORDS),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=SEQUENCE_LENGTH,
    )


def clip_tokenizer():
    """A byte-pair vocabulary that spells `WORDS`; the end token has the highest id, as in CLIP."""
    vocabulary, merges = {}, []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        for piece in pieces:
            vocabulary.setdefault(piece, len(vocabulary) + 1)
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocabulary.setdefault(pieces[0], len(vocabulary) + 1)
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocabulary[token] = len(vocabulary) + 1
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary, list(dict.fromkeys(merges)))
    return tokenizer, len(vocabulary) + 1


def clip_backbone(vocabulary_size):
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=4,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        image_shape=IMAGE_SHAPE,
    )
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=vocabulary_size,
        embedding_dim=8,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        max_sequence_length=SEQUENCE_LENGTH,
    )
    return keras_hub.models.CLIPBackbone(vision, text, projection_dim=6)


def siglip_tokenizer():
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS),
        model_writer=proto,
        vocab_size=12,
        model_type="WORD",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        bos_piece="<s>",
        eos_piece="</s>",
        unk_piece="<unk>",
        minloglevel=2,
    )
    return keras_hub.models.SigLIPTokenizer(proto=proto.getvalue())


def siglip_backbone():
    vision = keras_hub.models.SigLIPVisionEncoder(
        patch_size=4,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        image_shape=IMAGE_SHAPE,
    )
    text = keras_hub.models.SigLIPTextEncoder(
        vocabulary_size=12,
        embedding_dim=8,
        hidden_dim=8,
        num_layers=1,
        num_heads=2,
        intermediate_dim=16,
        max_sequence_length=SEQUENCE_LENGTH,
    )
    return keras_hub.models.SigLIPBackbone(vision, text)


# ---------------------------------------------------------------- train, save, export
def assert_fit_changes_the_weights(model, towers, data):
    """One `fit` step changes every trainable weight of `towers`.

    Except attention key biases: they add the same logit to every key of a query, which
    the softmax ignores, so their gradient is zero.
    """
    before = [[v.numpy().copy() for v in tower.trainable_variables] for tower in towers]
    model.fit(data, epochs=1, verbose=0)
    for tower, weights in zip(towers, before, strict=True):
        variables = tower.trainable_variables
        assert variables and len(variables) == len(weights)
        unchanged = [
            v.path
            for v, w in zip(variables, weights, strict=True)
            if np.allclose(v.numpy(), w) and not v.path.endswith("key/bias")
        ]
        assert not unchanged, f"{tower.name}: these weights did not train: {unchanged}"


def _image_model(name):
    """ResNet: SimCLR (`TwoView`); ViT: SupCon on labels (`Supervised`)."""
    if name == "resnet":
        encoder = kc.encoders.from_keras_hub(resnet_backbone())
        model = kc.ContrastiveModel(
            encoder=encoder,
            projection_head=kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4),
            augmenter=kc.layers.SimCLRAugmentation(image_size=16, value_range=(0, 1)),
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=kc.losses.NTXentLoss())
        return model, tf.data.Dataset.from_tensor_slices(images()).batch(BATCH), 64
    model = kc.ContrastiveModel(
        encoder=kc.encoders.from_keras_hub(vit_backbone()), projection_head=keras.layers.Dense(4)
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=kc.losses.SupConLoss())
    labels = np.arange(BATCH) % 3
    return model, tf.data.Dataset.from_tensor_slices((images(), labels)).batch(BATCH), 8


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_an_image_backbone_trains_saves_and_exports_as_the_encoder(name, tmp_path):
    model, data, width = _image_model(name)
    assert_fit_changes_the_weights(model, [model.encoder], data)
    expected = model.predict(images(), verbose=0)
    assert expected.shape == (BATCH, width)

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(images(), verbose=0), expected, atol=1e-5)

    kc.export.export_encoder(model, str(tmp_path / "encoder"))
    serve = tf.saved_model.load(str(tmp_path / "encoder")).signatures["serving_default"]
    served = serve(images=tf.constant(images()))["embedding"].numpy()
    np.testing.assert_allclose(served, l2(expected), atol=1e-5)


def _dual_model(name):
    """A dual model whose text tower is keras-hub's: CLIP, SigLIP or BERT (with a small CNN)."""
    logit_scale, loss = "learnable", kc.losses.CLIPLoss()
    if name == "clip":
        tokenizer, vocabulary_size = clip_tokenizer()
        backbone = clip_backbone(vocabulary_size)
        image_encoder = kc.encoders.from_keras_hub(backbone, tower="image")
        text_encoder = kc.encoders.from_keras_hub(backbone, tokenizer=tokenizer)
    elif name == "siglip":
        backbone = siglip_backbone()
        image_encoder = kc.encoders.from_keras_hub(backbone)
        text_encoder = kc.encoders.from_keras_hub(backbone, tokenizer=siglip_tokenizer())
        logit_scale, loss = kc.layers.SigmoidLogitScale(), kc.losses.SigLIPLoss()
    else:
        image_encoder = kc.encoders.small_cnn(input_shape=IMAGE_SHAPE, width=4)
        text_encoder = kc.encoders.from_keras_hub(bert_backbone(), tokenizer=bert_tokenizer())
    model = kc.ContrastiveModel(
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        image_head=keras.layers.Dense(4),
        text_head=keras.layers.Dense(4),
        logit_scale=logit_scale,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    return model


@pytest.mark.parametrize("name, width", [("clip", 6), ("siglip", 8), ("bert", 8)])
def test_a_text_tower_trains_saves_and_serves_raw_strings(name, width, tmp_path):
    model = _dual_model(name)
    data = tf.data.Dataset.from_tensor_slices({"image": images(), "text": captions()})
    towers = [model.image_encoder, model.text_encoder]
    assert_fit_changes_the_weights(model, towers, data.batch(BATCH))
    texts = tf.constant(captions())
    representation = model.text_encoder(texts).numpy()
    assert representation.shape == (BATCH, width)
    text, image = model.embed_text(texts).numpy(), model.embed_image(images()).numpy()

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.embed_text(texts), text, atol=1e-5)
    np.testing.assert_allclose(loaded.embed_image(images()), image, atol=1e-5)

    kc.export.export_encoder(model, str(tmp_path / "dual"), modality="dual")
    signatures = tf.saved_model.load(str(tmp_path / "dual")).signatures
    served_text = signatures["embed_text"](texts=texts)["embedding"].numpy()
    np.testing.assert_allclose(served_text, l2(text), atol=1e-5)
    served_image = signatures["embed_image"](images=tf.constant(images()))["embedding"]
    np.testing.assert_allclose(served_image.numpy(), l2(image), atol=1e-5)
    if name == "bert":  # the tower alone, reloaded as a Keras 3 layer of strings
        kc.export.export_encoder(model.text_encoder, str(tmp_path / "text"), modality="text")
        layer = kc.export.SavedModelEncoder(str(tmp_path / "text"))
        np.testing.assert_allclose(layer(texts).numpy(), l2(representation), atol=1e-5)


def test_a_lora_text_tower_with_its_tokenizer_exports_merged(tmp_path):
    """The merged copy export makes of a tokenizing tower keeps the vocabulary (an asset)."""
    text_encoder = kc.encoders.from_keras_hub(bert_backbone(), tokenizer=bert_tokenizer())
    assert kc.lora.enable_lora(text_encoder, rank=2)
    for _, layer in kc.lora._layers.adapted(text_encoder):
        _, b = kc.lora._layers.factors(layer)
        b.assign(np.full(b.shape, 0.1, b.dtype))  # as if trained: the adapters matter
    texts = tf.constant(captions())
    want = text_encoder(texts).numpy()
    kc.export.export_encoder(text_encoder, str(tmp_path / "text"), modality="text")
    loaded = tf.saved_model.load(str(tmp_path / "text"))
    assert not [v.name for v in loaded.variables if "lora" in v.name]
    served = loaded.signatures["serving_default"](texts=texts)["embedding"].numpy()
    np.testing.assert_allclose(served, l2(want), atol=1e-5)


# ---------------------------------------------------------------- representations
def _reference_image_pooling(backbone, pooling, x):
    features = np.asarray(backbone(x))
    if pooling == "max":
        return features.max(axis=(1, 2))
    if pooling == "token":
        return features[:, 0]
    return features.mean(axis=tuple(range(1, features.ndim - 1)))


@pytest.mark.parametrize(
    "make, pooling",
    [
        (resnet_backbone, "avg"),
        (resnet_backbone, "max"),
        (vit_backbone, "token"),
        (vit_backbone, "avg"),
    ],
)
def test_image_pooling_is_that_of_the_backbone_output(make, pooling):
    backbone = make()
    encoder = kc.encoders.from_keras_hub(backbone, pooling=pooling)
    expected = _reference_image_pooling(backbone, pooling, images(2))
    np.testing.assert_allclose(encoder(images(2)), expected, atol=1e-5)


@pytest.mark.parametrize("pooling", ["pooled", "cls", "avg"])
def test_bert_pooling_is_that_of_the_backbone_outputs(pooling):
    backbone = bert_backbone()
    encoder = kc.encoders.from_keras_hub(backbone, pooling=pooling)  # token inputs
    preprocess = keras_hub.models.BertTextClassifierPreprocessor(bert_tokenizer(), SEQUENCE_LENGTH)
    tokens = {key: np.asarray(value) for key, value in preprocess(CAPTIONS[:2]).items()}
    outputs = {key: np.asarray(value) for key, value in backbone(tokens).items()}
    mask = tokens["padding_mask"][..., None]
    expected = {
        "pooled": outputs["pooled_output"],
        "cls": outputs["sequence_output"][:, 0],
        "avg": (outputs["sequence_output"] * mask).sum(1) / mask.sum(1),
    }[pooling]
    np.testing.assert_allclose(encoder(tokens), expected, atol=1e-5)


def test_padding_does_not_change_the_mean_of_bert_tokens():
    backbone = bert_backbone()
    short, full = (
        kc.encoders.from_keras_hub(backbone, bert_tokenizer(), pooling="avg", sequence_length=n)
        for n in (6, SEQUENCE_LENGTH)
    )
    np.testing.assert_allclose(short(tf.constant(CAPTIONS)), full(tf.constant(CAPTIONS)), atol=1e-5)


def test_a_keras_hub_preprocessor_can_be_the_tokenizer():
    backbone = bert_backbone()
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(bert_tokenizer(), 6)
    from_preprocessor = kc.encoders.from_keras_hub(backbone, tokenizer=preprocessor)
    from_tokenizer = kc.encoders.from_keras_hub(backbone, bert_tokenizer(), sequence_length=6)
    texts = tf.constant(CAPTIONS)
    np.testing.assert_allclose(from_preprocessor(texts), from_tokenizer(texts), atol=1e-6)


def test_the_tokenizing_layer_turns_xla_off():
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(bert_tokenizer(), 6)
    layer = kc.encoders.KerasHubTextPreprocessor(preprocessor)
    assert layer.supports_jit is False
    tokens = layer(tf.constant(["a red square"]))
    assert sorted(tokens) == ["padding_mask", "segment_ids", "token_ids"]
    assert tokens["token_ids"].shape == (1, 6)


# ---------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def bert():
    return bert_backbone()


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"pooling": "max"}, ValueError, "`pooling` for the text tower of a BertBackbone must be"),
        ({"pooling": "max"}, ValueError, "Received: pooling='max'"),
        ({"tower": "image"}, ValueError, "`tower` for a BertBackbone must be one of ['text']"),
        ({"tokenizer": "bert"}, TypeError, "`tokenizer` must be a keras_hub Tokenizer"),
        ({"sequence_length": 8}, ValueError, "`sequence_length` needs a `tokenizer`"),
    ],
)
def test_bad_arguments_are_refused(bert, kwargs, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        kc.encoders.from_keras_hub(bert, **kwargs)


def test_a_sequence_longer_than_the_position_embeddings_is_refused(bert):
    with pytest.raises(ValueError, match="at most the backbone's max_sequence_length=8"):
        kc.encoders.from_keras_hub(bert, bert_tokenizer(), sequence_length=9)


def test_an_unsupported_backbone_is_refused():
    with pytest.raises(TypeError, match="one of .*'BertBackbone'.*Received: backbone=Functional"):
        kc.encoders.from_keras_hub(kc.encoders.small_cnn(input_shape=IMAGE_SHAPE, width=2))


def test_a_tokenizer_for_an_image_tower_is_refused():
    with pytest.raises(ValueError, match="apply to text towers only"):
        kc.encoders.from_keras_hub(resnet_backbone(), tokenizer=bert_tokenizer())


def test_a_preprocessor_of_another_backbone_is_refused(bert):
    tokenizer, _ = clip_tokenizer()
    preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer, sequence_length=8)
    with pytest.raises(TypeError, match="must be a keras_hub.models.TextClassifierPreprocessor"):
        kc.encoders.from_keras_hub(bert, tokenizer=preprocessor)
