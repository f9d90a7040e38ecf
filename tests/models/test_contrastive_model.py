import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from towers import head, mlp

import keras_contrastive as kc
from keras_contrastive import losses


def two_view_data(n=32, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    noise = lambda: rng.normal(scale=0.1, size=x.shape).astype("float32")  # noqa: E731
    return x + noise(), x + noise(), (np.arange(n) % 4).astype("int32")


def images(n=16, size=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype("float32")


def first_and_last(history, key="loss"):
    values = history.history[key]
    return values[0], values[-1]


@pytest.mark.parametrize("loss", [losses.NTXentLoss(0.2), losses.InfoNCELoss(0.2)])
def test_two_view_pairs_loss_decreases(loss):
    v1, v2, _ = two_view_data()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    dataset = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(16)  # x = (v1, v2)
    history = model.fit(dataset, epochs=10, verbose=0)  # 20 steps
    first, last = first_and_last(history)
    assert last < 0.9 * first
    assert history.history["contrastive_accuracy"][-1] > history.history["contrastive_accuracy"][0]


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_two_view_dataset_of_unnested_views_is_refused_naming_the_layout(run_eagerly):
    # Keras reads a batch `(v1, v2)` as `(x, y)`: the second view would be the labels.
    v1, v2, _ = two_view_data(n=16)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer="adam", run_eagerly=run_eagerly)
    assert isinstance(model.method, kc.methods.TwoView)
    unnested = tf.data.Dataset.from_tensor_slices((v1, v2)).batch(8)
    with pytest.raises(ValueError, match=r"wrong structure.*yielded as `\(\(view_1, view_2\),\)`"):
        model.fit(unnested, verbose=0)
    assert int(model.optimizer.iterations) == 0  # refused before any step
    nested = unnested.map(lambda a, b: ((a, b),))  # the fix the error names
    history = model.fit(nested, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 2
    assert np.isfinite(history.history["loss"][0])


def test_two_view_with_in_step_augmentation_trains_and_embeds():
    x = images()
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8, batch_norm=False),
        projection_head=head(),
        augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16), value_range=(0, 1)),
    )
    model.compile(optimizer="adam")
    assert isinstance(model.loss, losses.NTXentLoss)  # the default
    history = model.fit(x, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    embedding = model.embed(x[:3])
    np.testing.assert_allclose(embedding, model.encoder(x[:3]), rtol=1e-6)  # no head
    assert model.predict(x[:3], verbose=0).shape == embedding.shape


@pytest.mark.parametrize(
    "loss", [losses.SupConLoss(0.2), losses.TripletLoss(margin=0.5, mining="semi_hard")]
)
def test_supervised_loss_decreases_and_probe_reports(loss):
    v1, _, y = two_view_data()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(), probe_classes=4)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    history = model.fit(v1, y, batch_size=16, epochs=10, verbose=0)
    first, last = first_and_last(history)
    assert last < first
    assert "probe_accuracy" in history.history


def test_margin_pairs_loss_decreases():
    v1, v2, y = two_view_data()
    similar = (y % 2).astype("float32")
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=losses.ContrastiveMarginLoss())
    dataset = tf.data.Dataset.from_tensor_slices(((v1, v2), similar)).batch(16)
    first, last = first_and_last(model.fit(dataset, epochs=10, verbose=0))
    assert last < first


CAPTIONS = ["a red square", "a blue circle", "a green line", "a small dot"]


def clip_model(**kwargs):
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        CAPTIONS, vocabulary_size=50, sequence_length=6, tokenizer="whitespace"
    )
    text_encoder = kc.encoders.text_transformer(
        vocabulary_size=preprocessor.vocabulary_size,
        sequence_length=6,
        embed_dim=8,
        num_heads=1,
        num_layers=1,
        output_dim=8,
    )
    return kc.ContrastiveModel(
        image_encoder=mlp(),
        text_encoder=text_encoder,
        image_head=head(),
        text_head=head(),
        text_preprocessor=preprocessor,
        **{"logit_scale": "learnable", **kwargs},
    )


def clip_data(n=16):
    x, _, y = two_view_data(n)
    text = np.array([CAPTIONS[i] for i in y % 4])
    return x, text, y % 4


def test_dual_encoder_on_raw_strings_learns_temperature():
    x, text, _ = clip_data()
    model = clip_model()
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    assert isinstance(model.loss, losses.CLIPLoss)
    dataset = tf.data.Dataset.from_tensor_slices({"image": x, "text": text}).batch(8)
    history = model.fit(dataset, epochs=10, verbose=0)
    first, last = first_and_last(history)
    assert last < first
    temperatures = history.history["temperature"]
    assert temperatures[0] != temperatures[-1]
    assert model.loss.temperature == 0.07  # the compiled loss is left as it was
    out = model({"image": x[:2], "text": text[:2]})
    assert out["image"].shape == out["text"].shape == (2, 4)


def test_dual_encoder_with_siglip_learns_temperature_and_bias():
    x, text, ids = clip_data()
    model = clip_model(logit_scale=kc.layers.SigmoidLogitScale())
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses.SigLIPLoss())
    data = tf.data.Dataset.from_tensor_slices({"image": x, "text": text}).batch(8)
    history = model.fit(data, epochs=10, verbose=0)
    first, last = first_and_last(history)
    assert last < first
    assert float(model.logit_scale.bias) != -10.0  # learned, from SigLIP's initial -10
    assert float(model.logit_scale.temperature) != 0.1
    assert (model.loss.temperature, model.loss.bias) == (0.1, -10.0)  # left as it was
    # The step used the learned pair: the loss of the batch from the layer's values.
    batch = next(iter(data))
    embedded = model(batch)
    pairs = ops.stack([embedded["image"], embedded["text"]], axis=1)
    expected = losses.siglip_loss(
        None, pairs, model.logit_scale.temperature, model.logit_scale.bias
    )
    got = model.evaluate(data.take(1), verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(got, float(ops.mean(expected)), rtol=1e-5)


def test_sigmoid_logit_scale_needs_the_siglip_loss():
    model = clip_model(logit_scale=kc.layers.SigmoidLogitScale())
    match = (
        r"DualEncoder .* taking state \('temperature', 'bias'\)\. CLIPLoss declares"
        r".*use kc.losses.SigLIPLoss"
    )
    with pytest.raises(ValueError, match=match):
        model.compile(optimizer="adam", loss=losses.CLIPLoss())
    model.compile(optimizer="adam", loss=losses.SigLIPLoss())  # the loss that takes the bias


def test_dual_encoder_group_ids():
    x, text, ids = clip_data()
    model = clip_model()
    model.compile(optimizer="adam", loss=losses.CLIPLoss(use_group_ids=True))
    data = {"image": x, "text": text, "group_id": ids}
    history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with pytest.raises(ValueError, match="group ids"):
        model.fit(
            tf.data.Dataset.from_tensor_slices({"image": x, "text": text}).batch(8), verbose=0
        )


def test_keras_save_round_trip_gives_identical_embeddings_and_resumes(tmp_path):
    x = images()
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
        projection_head=kc.layers.ProjectionHead(hidden_dims=(16,), output_dim=8),
        augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16), value_range=(0, 1)),
        probe_classes=3,
    )
    model.compile(optimizer="adam", loss=losses.NTXentLoss(0.2))
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    json.dumps(model.get_config())  # no live objects
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.embed(x), model.embed(x), atol=1e-6)
    assert restored.loss.get_config() == model.loss.get_config()
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations)
    # Training continues identically from the restored state.
    a = model.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    b = restored.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_dual_encoder_save_round_trip(tmp_path):
    x, text, _ = clip_data()
    model = clip_model()
    model.compile(optimizer="adam")
    data = {"image": x, "text": tf.constant(text)}
    model.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), epochs=1, verbose=0)
    model.save(tmp_path / "clip.keras")
    restored = keras.models.load_model(tmp_path / "clip.keras")
    for key in ("image", "text"):
        np.testing.assert_allclose(
            restored(data)[key],
            model(data)[key],
            atol=1e-6,
        )
    np.testing.assert_allclose(restored.logit_scale.temperature, model.logit_scale.temperature)


def test_steps_per_execution_and_mixed_precision():
    v1, v2, _ = two_view_data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
        model.compile(optimizer="adam", steps_per_execution=2)
        history = model.fit((v1, v2), batch_size=8, epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))


# ------------------------------------------------------------------ bad input
def test_labels_given_to_a_self_supervised_loss_are_refused():
    v1, _, y = two_view_data()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer="adam", loss=losses.NTXentLoss())
    with pytest.raises(ValueError, match="two views"):
        model.fit(v1, y, batch_size=8, verbose=0)


def test_supervised_loss_without_labels_is_refused():
    v1, v2, _ = two_view_data()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer="adam", loss=losses.SupConLoss())
    with pytest.raises(ValueError, match="labels"):
        model.fit((v1, v2), batch_size=8, verbose=0)


def test_dict_without_text_is_refused():
    x, _, _ = clip_data()
    model = clip_model()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match='"text"'):
        model.fit({"image": x}, batch_size=8, verbose=0)


def test_head_with_wrong_output_rank_is_refused():
    v1, v2, _ = two_view_data()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=keras.layers.Reshape((2, 4)))
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="projection_head"):
        model.fit((v1, v2), batch_size=8, verbose=0)


def test_loss_incompatible_with_the_method_is_refused():
    # A loss without a contract is read as Keras' (B,) labels, (B, D): TwoView cannot feed it.
    model = kc.ContrastiveModel(encoder=mlp(), method=kc.methods.TwoView())
    match = r"TwoView trains with a loss .* MeanSquaredError declares labels='integer'"
    with pytest.raises(ValueError, match=match):
        model.compile(loss=keras.losses.MeanSquaredError())
    with pytest.raises(ValueError, match=r"Pairs trains with a loss .* NTXentLoss declares"):
        kc.ContrastiveModel(encoder=mlp(), method=kc.methods.Pairs()).compile(
            loss=losses.NTXentLoss()
        )
    with pytest.raises(ValueError, match="must be a keras.losses.Loss instance"):
        kc.ContrastiveModel(encoder=mlp()).compile(loss="mse")
    with pytest.raises(ValueError, match=r"DualEncoder trains with a loss .* SupConLoss declares"):
        clip_model().compile(loss=losses.SupConLoss())


def test_unknown_logit_scale_and_missing_towers_are_refused():
    with pytest.raises(ValueError, match="logit_scale"):
        kc.ContrastiveModel(image_encoder=mlp(), text_encoder=mlp(), logit_scale="fixed")
    with pytest.raises(ValueError, match="text_encoder"):
        kc.ContrastiveModel(image_encoder=mlp())
    with pytest.raises(ValueError, match="probe_classes"):
        kc.ContrastiveModel(encoder=mlp(), probe_classes=1)


def test_non_finite_loss_stops_training_with_a_clear_error():
    v1, v2, _ = two_view_data()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer=keras.optimizers.SGD(1e30))
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite|NaN or Inf"):
        model.fit((v1 * 1e30, v2), batch_size=8, epochs=3, verbose=0)


# ------------------------------------------------------ batch layout errors
def zipped(parts, sizes, drop_remainder=False):
    """A dataset zipping `parts`, each batched by its own size (so they can differ)."""
    batched = tuple(
        tf.data.Dataset.from_tensor_slices(p).batch(n, drop_remainder=drop_remainder)
        for p, n in zip(parts, sizes, strict=True)
    )
    return tf.data.Dataset.zip(batched).take(1)


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_supervised_labels_not_of_shape_b_are_refused_with_the_layout(run_eagerly):
    v1, v2, y = two_view_data(n=8)
    one_hot = np.eye(2, dtype="int32")[y % 2]  # (8, 2), not (B,)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer="adam", loss=losses.SupConLoss(), run_eagerly=run_eagerly)
    match = r"\(\(view_1, view_2\), labels\).*\((8|None), 2\).*`y` \(labels\) must be \(B,\)"
    with pytest.raises(ValueError, match=match):
        model.fit(v1, one_hot, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=match):  # with two views: not flattened to 16 labels
        model.fit(zipped([(v1, v2), one_hot], [8, 8]), verbose=0)
    model.fit(zipped([(v1, v2), y], [8, 8]), verbose=0)  # the two-view layout works


@pytest.mark.parametrize("drop_remainder", [False, True])
@pytest.mark.parametrize("case", ["labels", "views", "dual"])
def test_parts_of_different_batch_sizes_are_refused_naming_them(case, drop_remainder):
    v1, v2, y = two_view_data(n=16)
    if case == "labels":
        model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
        model.compile(optimizer="adam", loss=losses.SupConLoss())
        data, names = zipped([v1, y], [8, 7], drop_remainder), "`labels` and `x`"
    elif case == "views":
        model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
        model.compile(optimizer="adam")
        data = zipped([v1, v2], [8, 7], drop_remainder).map(lambda a, b: ((a, b),))
        names = "`view_2` and `view_1`"
    else:
        x, text, _ = clip_data(16)
        model = clip_model()
        model.compile(optimizer="adam")
        data = zipped([x, text], [8, 7], drop_remainder).map(lambda i, t: {"image": i, "text": t})
        names = "`text` and `image`"
    error = ValueError if drop_remainder else tf.errors.InvalidArgumentError
    with pytest.raises(error, match=f"{names} must have the same batch size"):
        model.fit(data, verbose=0)


@pytest.mark.parametrize("static", [True, False])
def test_views_of_different_feature_shapes_are_refused(static):
    v1, v2, _ = two_view_data(n=8)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(optimizer="adam")
    data, error = tf.data.Dataset.from_tensors(((v1, v2[:, :5]),)), ValueError
    if not static:  # feature sizes unknown when the step is traced
        spec = ((tf.TensorSpec((None, None), tf.float32),) * 2,)
        batches = lambda: iter([((v1, v2[:, :5]),)])  # noqa: E731
        data = tf.data.Dataset.from_generator(batches, output_signature=spec)
        error = tf.errors.InvalidArgumentError
    with pytest.raises(error, match=r"`view_1` and `view_2` must have the same shape"):
        model.fit(data, verbose=0)
