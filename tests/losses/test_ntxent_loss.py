import numpy as np
import pytest
import references as ref
import tensorflow as tf

from keras_contrastive.losses import NTXentLoss, ntxent_loss


@pytest.mark.parametrize("batch,dim,temperature", [(2, 3, 0.1), (5, 8, 0.5), (16, 4, 1.0)])
def test_values_match_reference(rng, batch, dim, temperature):
    x = rng.normal(size=(batch, 2, dim))
    values = ntxent_loss(None, x.astype("float32"), temperature=temperature)
    np.testing.assert_allclose(values, ref.ntxent(x, temperature), rtol=1e-5, atol=1e-5)
    mean = NTXentLoss(temperature)(None, x.astype("float32"))
    np.testing.assert_allclose(mean, ref.ntxent(x, temperature).mean(), rtol=1e-5)


def test_identical_views_lower_than_random_views(rng):
    x = rng.normal(size=(16, 1, 8)).astype("float32")
    same = NTXentLoss()(None, np.concatenate([x, x], axis=1))
    random = NTXentLoss()(None, rng.normal(size=(16, 2, 8)).astype("float32"))
    assert float(same) < float(random)


def test_temperature_can_be_a_variable(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    temperature = tf.Variable(0.2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(ntxent_loss(None, x, temperature=temperature))
    np.testing.assert_allclose(loss, ref.ntxent(x, 0.2).mean(), rtol=1e-5)
    assert np.isfinite(tape.gradient(loss, temperature))


def test_y_pred_without_views_axis_is_refused(rng):
    with pytest.raises(ValueError, match="y_pred"):
        NTXentLoss()(None, rng.normal(size=(4, 3)).astype("float32"))
    with pytest.raises(ValueError, match="y_pred"):
        NTXentLoss()(None, rng.normal(size=(4, 3, 2)).astype("float32"))
