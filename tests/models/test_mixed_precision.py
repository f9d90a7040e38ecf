"""Mixed precision: every ContrastiveModel mode trains, and the losses stay in float32.

Under `mixed_bfloat16` and `mixed_float16` the towers compute in 16 bits
while the losses take their logits and log-sum-exp in float32 (DESIGN.md), and
`mixed_float16` scales the loss through Keras' `LossScaleOptimizer`. The global
policy is restored after each test.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import towers
from towers import BATCH, captions, class_labels, clip_model, features, mlp, small_images

import keras_contrastive as kc
from keras_contrastive import losses

POLICIES = ("mixed_bfloat16", "mixed_float16")


@pytest.fixture(params=POLICIES)
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy(previous)


def head():
    return towers.head(batch_norm=True)  # mixed precision through BatchNorm too


def simclr():
    images = small_images()
    return towers.simclr_model(head()), losses.NTXentLoss(0.1), (images,), images


def view_pairs():
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    # Two views made in tf.data are one input: `((view_1, view_2),)`.
    return model, losses.InfoNCELoss(0.07), ((features(0), features(1)),), features(0)


def supervised(loss):
    def make():
        model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
        return model, loss(), (features(), class_labels()), features()

    return make


def margin_pairs():
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    similar = (np.arange(BATCH) % 2).astype("float32")
    return model, losses.ContrastiveMarginLoss(), ((features(0), features(1)), similar), features()


def clip():
    batch = ({"image": features(), "text": captions()},)
    return clip_model(head(), head()), losses.CLIPLoss(), batch, features()


MODES = {
    "simclr_in_step_augmentation": simclr,
    "ntxent_view_pairs": view_pairs,
    "supcon": supervised(lambda: losses.SupConLoss(0.1)),
    "triplet_semi_hard": supervised(lambda: losses.TripletLoss(margin=0.5, mining="semi_hard")),
    "contrastive_margin_pairs": margin_pairs,
    "clip_learnable_temperature": clip,
}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_trains_without_nan(policy, mode):
    model, loss, batch, inputs = MODES[mode]()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    assert model.embed(inputs[:2]).dtype == policy.removeprefix("mixed_")  # 16-bit towers
    loss_dtypes = []
    per_example_loss = loss.call

    def spy(y_true, y_pred):
        values = per_example_loss(y_true, y_pred)
        loss_dtypes.append(values.dtype)
        return values

    loss.call = spy
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [w.numpy() for w in model.trainable_weights]
    # Dynamic loss scaling (mixed_float16) skips the first steps while it lowers
    # its initial scale of 2**15 to one under which the gradients do not overflow.
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(16), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert loss_dtypes and all(dtype == "float32" for dtype in loss_dtypes)
    for w in model.trainable_weights:
        assert np.all(np.isfinite(w.numpy())), w.path
    assert any(
        not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights, strict=True)
    )


def ntxent_reference(views, temperature):
    """NT-Xent in float64 NumPy: views `(B, 2, D)`, loss averaged over the 2B anchors."""
    z = np.concatenate([views[:, 0], views[:, 1]]).astype("float64")
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logits = z @ z.T / temperature
    np.fill_diagonal(logits, -np.inf)
    b = len(views)
    positives = np.concatenate([np.arange(b, 2 * b), np.arange(b)])
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return np.mean(log_norm - logits[np.arange(2 * b), positives])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_ntxent_from_16_bit_embeddings_matches_float64(dtype, scale):
    """Large embeddings overflow a float16 sum of squares (300^2 * 16 > 65504)."""
    views = scale * np.random.default_rng(0).normal(size=(BATCH, 2, 16))
    low = tf.constant(views, dtype)
    value = losses.NTXentLoss(0.1)(None, low)
    assert value.dtype == "float32"
    rounded = tf.cast(low, "float64").numpy()
    np.testing.assert_allclose(value, ntxent_reference(rounded, 0.1), rtol=1e-5)
    np.testing.assert_allclose(value, ntxent_reference(views, 0.1), rtol=0.05)


LOSSES = {
    "ntxent": (losses.NTXentLoss(0.1), None, False),
    "info_nce": (losses.InfoNCELoss(0.07), None, False),
    "supcon": (losses.SupConLoss(0.1), "labels", False),
    "clip": (losses.CLIPLoss(0.07), None, False),
    "triplet_semi_hard": (losses.TripletLoss(mining="semi_hard"), "labels", True),
    "triplet_batch_all": (losses.TripletLoss(mining="batch_all"), "labels", True),
    "contrastive_margin": (losses.ContrastiveMarginLoss(margin=20.0), "pairs", False),
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", LOSSES)
def test_losses_of_16_bit_embeddings_are_float32_and_match(dtype, name):
    """`Loss.call` (the function twin, which Keras' cast to float32 does not reach)."""
    loss, targets, flat = LOSSES[name]
    rng = np.random.default_rng(1)
    views = 10.0 * rng.normal(size=(BATCH, 2, 16)).astype("float32")  # |z|^2 ~ 1600
    y = {"labels": class_labels(), "pairs": (np.arange(BATCH) % 2).astype("float32")}.get(targets)
    y = None if y is None else tf.constant(y)
    low = tf.constant(views, dtype)
    rounded = tf.cast(low, "float32")
    if flat:
        low, rounded, views = low[:, 0], rounded[:, 0], views[:, 0]
    values = loss.call(y, low)
    assert values.dtype == "float32"
    assert np.all(np.isfinite(values))
    # The same values in float32 give the same losses up to float32 rounding ...
    np.testing.assert_allclose(values, loss.call(y, rounded), rtol=1e-5, atol=1e-5)
    # ... and the loss is close to that of the unrounded embeddings.
    np.testing.assert_allclose(loss(y, low), loss(y, views), rtol=0.05, atol=0.02)
