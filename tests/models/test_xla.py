"""`compile(jit_compile=True)` (XLA) trains every ContrastiveModel mode on one device.

Each mode takes one SGD step with and without XLA from the same initial
weights: XLA must really be on (`model.jit_compile`), give a finite loss that
matches the loss without XLA, and move the weights as the step without XLA
does. Raw `tf.string` text cannot be compiled by XLA: for CLIP the batches are
tokenized in `tf.data` by the model's own `TextPreprocessor` and the model is
fed token ids (the model still embeds raw strings outside the compiled step).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from towers import (
    BATCH,
    CAPTIONS,
    captions,
    class_labels,
    clip_model,
    features,
    head,
    mlp,
    simclr_model,
    small_images,
)

import keras_contrastive as kc
from keras_contrastive import losses


def simclr():
    model = simclr_model(head())
    return model, losses.NTXentLoss(0.2), tf.data.Dataset.from_tensors(small_images())


def supervised(loss):
    def make():
        model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
        return model, loss(), tf.data.Dataset.from_tensors((features(), class_labels()))

    return make


def margin_pairs():
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    similar = (np.arange(BATCH) % 2).astype("float32")
    data = tf.data.Dataset.from_tensors(((features(0), features(1)), similar))
    return model, losses.ContrastiveMarginLoss(), data


def clip():
    model = clip_model(head(), head())
    data = tf.data.Dataset.from_tensors({"image": features(), "text": captions()})
    # XLA compiles no string op: tokenize in tf.data, feed token ids.
    data = data.map(lambda x: {"image": x["image"], "text": model.text_preprocessor(x["text"])})
    return model, losses.CLIPLoss(), data


MODES = {
    "simclr_in_step_augmentation": simclr,
    "supcon": supervised(lambda: losses.SupConLoss(0.2)),
    "triplet_semi_hard": supervised(lambda: losses.TripletLoss(margin=0.5, mining="semi_hard")),
    "contrastive_margin_pairs": margin_pairs,
    "clip_learnable_temperature": clip,
}


def one_step(make, jit):
    """Builds a mode's model from seed 0, takes one SGD step; returns model, loss, weights."""
    keras.utils.set_random_seed(0)
    model, loss, data = make()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, jit_compile=jit)
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(data, epochs=1, verbose=0)
    after = [w.numpy() for w in model.trainable_weights]
    return model, history.history["loss"][0], before, after


@pytest.fixture(scope="module")
def steps():
    """`{mode: (step without XLA, step with XLA)}`, each built and run once."""
    cache = {}

    def get(mode):
        if mode not in cache:
            cache[mode] = tuple(one_step(MODES[mode], jit) for jit in (False, True))
        return cache[mode]

    return get


@pytest.mark.parametrize("mode", MODES)
def test_xla_step_matches_the_step_without_xla(steps, mode):
    (_, loss, _, after), (model, xla_loss, xla_before, xla_after) = steps(mode)
    assert model.jit_compile is True  # not silently turned off by a layer
    assert np.isfinite(xla_loss)
    np.testing.assert_allclose(xla_loss, loss, rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(b, a) for b, a in zip(xla_before, xla_after, strict=True))
    for xla_weight, weight in zip(xla_after, after, strict=True):
        np.testing.assert_allclose(xla_weight, weight, rtol=1e-3, atol=1e-5)


def test_clip_trained_with_xla_still_embeds_raw_strings(steps):
    _, (model, _, _, _) = steps("clip_learnable_temperature")
    texts = tf.constant(CAPTIONS[:2])
    tokens = model.text_preprocessor(texts)
    np.testing.assert_allclose(model.embed_text(texts), model.embed_text(tokens), atol=1e-6)


def test_raw_strings_in_an_xla_step_are_refused_with_the_fix():
    """XLA has no string kernels: a clear error says to tokenize in tf.data."""
    keras.utils.set_random_seed(0)
    model, loss, _ = clip()
    data = tf.data.Dataset.from_tensors({"image": features(), "text": captions()})
    model.compile(optimizer="sgd", loss=loss, jit_compile=True)
    with pytest.raises(ValueError, match="Tokenize them in tf.data"):
        model.fit(data, epochs=1, verbose=0)
