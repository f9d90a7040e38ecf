import numpy as np
import pytest
import references as ref
import tensorflow as tf

from keras_contrastive.losses import CLIPLoss, clip_loss


@pytest.mark.parametrize("batch,dim,temperature", [(2, 3, 0.07), (7, 5, 0.3), (12, 4, 1.0)])
def test_values_match_reference(rng, batch, dim, temperature):
    x = rng.normal(size=(batch, 2, dim))
    values = clip_loss(None, x.astype("float32"), temperature)
    np.testing.assert_allclose(values, ref.clip(x, temperature), rtol=1e-5, atol=1e-5)


def test_group_ids_make_every_caption_of_an_image_a_positive(rng):
    x = rng.normal(size=(6, 2, 4))
    ids = np.array([0, 0, 1, 2, 2, 2])
    loss = CLIPLoss(temperature=0.1, use_group_ids=True)
    np.testing.assert_allclose(
        loss(ids, x.astype("float32")), ref.clip(x, 0.1, ids).mean(), rtol=1e-5
    )
    # Without group ids the labels are ignored.
    np.testing.assert_allclose(
        CLIPLoss(temperature=0.1)(ids, x.astype("float32")), ref.clip(x, 0.1).mean(), rtol=1e-5
    )


def test_learnable_temperature_gets_a_gradient(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    log_scale = tf.Variable(np.log(1 / 0.07), dtype="float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(clip_loss(None, x, temperature=1.0 / tf.exp(log_scale)))
    np.testing.assert_allclose(loss, ref.clip(x, 0.07).mean(), rtol=1e-5)
    assert np.isfinite(tape.gradient(loss, log_scale))


def test_group_ids_must_match_batch(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    with pytest.raises(ValueError, match="y_true"):
        CLIPLoss(use_group_ids=True)(np.array([0, 1, 2]), x)
