"""Gradient caching: one step in sub-batches updates the weights as the full-batch step."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import head, mlp

import keras_contrastive as kc
from keras_contrastive import losses

BATCH = 16
CAPTIONS = ["a red square", "a blue circle", "a green line", "a small dot"]


def make(kind, chunks, **kwargs):
    """A model, its loss and one batch of data, for each kind of step tested."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 6)).astype("float32")
    noisy = (x + rng.normal(scale=0.3, size=x.shape)).astype("float32")
    if kind == "augmented":  # NT-Xent on images, views made in the step
        model = kc.ContrastiveModel(
            encoder=kc.encoders.small_cnn(input_shape=(8, 8, 3), width=4, batch_norm=False),
            projection_head=head(),
            augmenter=kc.layers.SimCLRAugmentation(image_size=(8, 8), value_range=(0, 1)),
            gradient_cache_chunks=chunks,
        )
        images = rng.uniform(size=(BATCH, 8, 8, 3)).astype("float32")
        return model, losses.NTXentLoss(0.2), images
    if kind == "supcon":  # labels, and an online probe whose gradient is direct
        model = kc.ContrastiveModel(
            encoder=mlp(), projection_head=head(), probe_classes=3, gradient_cache_chunks=chunks
        )
        return model, losses.SupConLoss(0.2), ((x, noisy), np.arange(BATCH) % 3)
    if kind == "supervised_one_view":  # `(x, labels)`: each example is its only view
        model = kc.ContrastiveModel(
            encoder=mlp(), projection_head=head(), gradient_cache_chunks=chunks
        )
        return model, losses.SupConLoss(0.2), (x, np.arange(BATCH) % 3)
    if kind == "clip":  # raw strings, token embeddings, learned temperature
        preprocessor = kc.layers.TextPreprocessor.from_corpus(
            CAPTIONS, vocabulary_size=20, sequence_length=4, tokenizer="whitespace"
        )
        model = kc.ContrastiveModel(
            image_encoder=mlp(),
            text_encoder=kc.encoders.text_transformer(
                vocabulary_size=preprocessor.vocabulary_size,
                sequence_length=4,
                embed_dim=8,
                num_heads=1,
                num_layers=1,
                output_dim=8,
            ),
            image_head=head(),
            text_head=head(),
            text_preprocessor=preprocessor,
            logit_scale="learnable",
            gradient_cache_chunks=chunks,
        )
        texts = np.array([CAPTIONS[i % 4] + " " + CAPTIONS[i // 4] for i in range(BATCH)])
        return model, losses.CLIPLoss(), {"image": x, "text": texts}
    if kind == "clip_features":  # numeric text features, learned temperature
        model = kc.ContrastiveModel(
            image_encoder=mlp(),
            text_encoder=mlp(),
            image_head=head(),
            text_head=head(),
            logit_scale="learnable",
            gradient_cache_chunks=chunks,
        )
        return model, losses.CLIPLoss(), {"image": x, "text": noisy}
    model = kc.ContrastiveModel(
        encoder=mlp(**kwargs), projection_head=head(), gradient_cache_chunks=chunks
    )
    return model, losses.NTXentLoss(0.2), ((x, noisy),)  # two views made in tf.data: one input


def one_step(model, loss, data, weights):
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    return model.fit(tf.data.Dataset.from_tensor_slices(data).batch(BATCH), verbose=0).history


def assert_same_weights(got, expected, atol=1e-5):
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=atol)


@pytest.mark.parametrize("kind", ["augmented", "supcon", "clip"])
def test_one_step_in_four_chunks_equals_the_full_batch_step(kind):
    plain, loss, data = make(kind, chunks=1)
    initial = plain.get_weights()
    expected = one_step(plain, loss, data, initial)
    cached, loss, data = make(kind, chunks=4)
    got = one_step(cached, loss, data, initial)
    assert any(
        np.abs(w - w0).max() > 1e-3 for w, w0 in zip(plain.get_weights(), initial, strict=True)
    )
    assert_same_weights(cached.get_weights(), plain.get_weights())
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5)


def test_supervised_one_view_batches_in_chunks_equal_the_plain_step():
    # kc.methods.Supervised (chosen from SupConLoss's integer labels) on
    # `(x, labels)`: SupCon over the 16 single-view embeddings of 3 classes.
    plain, loss, data = make("supervised_one_view", chunks=1)
    initial = plain.get_weights()
    expected = one_step(plain, loss, data, initial)
    cached, loss, data = make("supervised_one_view", chunks=4)
    got = one_step(cached, loss, data, initial)
    for model in (plain, cached):
        assert isinstance(model.method, kc.methods.Supervised)
    assert plain.gradient_cache is None
    assert cached.gradient_cache.chunks == 4
    assert any(
        np.abs(w - w0).max() > 1e-3 for w, w0 in zip(plain.get_weights(), initial, strict=True)
    )
    assert_same_weights(cached.get_weights(), plain.get_weights())
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5)


def test_dropout_draws_replay_in_the_second_pass():
    # Reference: the towers run on the four chunks in order under one tape, so
    # that each chunk draws the dropout masks that pass 1 draws; the cached
    # step must back-propagate through those same masks.
    model, loss, ((x, noisy),) = make("mlp", chunks=4, dropout=0.5)
    initial = model.get_weights()
    one_step(model, loss, ((x, noisy),), initial)

    reference, _, _ = make("mlp", chunks=1, dropout=0.5)
    reference.set_weights(initial)
    views = np.stack([x, noisy], axis=1)
    weights = reference.trainable_weights
    with tf.GradientTape() as tape:
        y_pred = tf.concat(
            [
                tf.reshape(
                    reference.projection_head(
                        reference.encoder(chunk.reshape(-1, 6), training=True), training=True
                    ),
                    (-1, 2, 4),
                )
                for chunk in np.split(views, 4)
            ],
            axis=0,
        )
        value = loss(None, y_pred)
    expected = [
        w.numpy() - 0.5 * g.numpy()
        for w, g in zip(weights, tape.gradient(value, weights), strict=True)
    ]
    assert_same_weights([w.numpy() for w in model.trainable_weights], expected)

    without_dropout, _, _ = make("mlp", chunks=1)
    one_step(without_dropout, loss, ((x, noisy),), initial)
    assert (
        max(
            np.abs(a - b).max()
            for a, b in zip(without_dropout.get_weights(), expected, strict=True)
        )
        > 1e-3
    )


@pytest.mark.parametrize("kind", ["mlp", "clip_features"])
def test_two_replicas_with_chunks_equal_one_device_without(kind):
    single, loss, data = make(kind, chunks=1)
    initial = single.get_weights()
    one_step(single, loss, data, initial)
    with cpu_strategy(2).scope():
        mirrored, loss, data = make(kind, chunks=2)  # 8 examples per replica, chunks of 4
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    mirrored.fit(tf.data.Dataset.from_tensor_slices(data).batch(BATCH), verbose=0)
    assert_same_weights(mirrored.get_weights(), single.get_weights())


def test_xla_and_mixed_precision_steps_match_the_plain_step():
    plain, loss, data = make("mlp", chunks=1)
    initial = plain.get_weights()
    one_step(plain, loss, data, initial)
    cached, loss, data = make("mlp", chunks=4)
    cached.set_weights(initial)
    cached.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=True)
    cached.fit(tf.data.Dataset.from_tensor_slices(data).batch(BATCH), verbose=0)
    assert_same_weights(cached.get_weights(), plain.get_weights())

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half, loss, data = make("mlp", chunks=4)
        half.set_weights(initial)
        half.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
        half.fit(tf.data.Dataset.from_tensor_slices(data).batch(BATCH), verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert_same_weights(half.get_weights(), plain.get_weights(), atol=2e-2)


def test_config_and_keras_round_trip(tmp_path):
    model, loss, data = make("mlp", chunks=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(BATCH)
    model.fit(dataset, verbose=0)
    config = model.get_config()
    assert config["gradient_cache_chunks"] == 4
    json.dumps(config)
    assert kc.ContrastiveModel.from_config(config).gradient_cache_chunks == 4
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert restored.gradient_cache_chunks == 4
    a = model.fit(dataset, epochs=2, verbose=0).history["loss"]
    b = restored.fit(dataset, epochs=2, verbose=0).history["loss"]
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert_same_weights(restored.get_weights(), model.get_weights(), atol=1e-6)


# ------------------------------------------------------------------ bad input
# Values out of range are `ValueError`s, values of the wrong type `TypeError`s
# (the shared validators, keras_contrastive/ops/_validation.py).
@pytest.mark.parametrize(
    "chunks, error",
    [
        (0, ValueError),
        (-2, ValueError),
        (2.0, TypeError),
        ("4", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_bad_gradient_cache_chunks_are_refused(chunks, error):
    with pytest.raises(error, match="`gradient_cache_chunks` must be an int >= 1"):
        kc.ContrastiveModel(encoder=mlp(), gradient_cache_chunks=chunks)
    with pytest.raises(error, match="`gradient_cache_chunks` must be an int >= 1"):
        kc.models.GradientCache(chunks)


def test_a_batch_that_chunks_do_not_divide_is_refused():
    model, loss, data = make("mlp", chunks=3)
    model.compile(optimizer="sgd", loss=loss)
    static = tf.data.Dataset.from_tensor_slices(data).batch(8, drop_remainder=True)
    with pytest.raises(ValueError, match="`gradient_cache_chunks`=3 must divide.*batch of 8"):
        model.fit(static, verbose=0)
    model, loss, _ = make("mlp", chunks=3)
    model.compile(optimizer="sgd", loss=loss)
    unknown = tf.data.Dataset.from_tensor_slices(data).batch(9)  # batches of 9, then 7
    with pytest.raises(tf.errors.InvalidArgumentError, match="`gradient_cache_chunks`=3"):
        model.fit(unknown, verbose=0)
