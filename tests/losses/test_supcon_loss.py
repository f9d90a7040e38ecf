import numpy as np
import pytest
import references as ref

from keras_contrastive.losses import SupConLoss, supcon_loss


@pytest.mark.parametrize(
    "batch,views,dim,temperature,base",
    [(4, 1, 3, 0.1, None), (6, 2, 5, 0.5, 0.07), (8, 3, 4, 1.0, None), (5, 0, 4, 0.2, 0.1)],
)
def test_values_match_reference(rng, batch, views, dim, temperature, base):
    labels = rng.integers(0, 3, size=batch)
    x = rng.normal(size=(batch, dim) if views == 0 else (batch, views, dim))
    values = supcon_loss(labels, x.astype("float32"), temperature, base)
    expected, valid = ref.supcon(labels, x, temperature, base)
    expected = expected[:, 0] if views == 0 else expected
    valid = valid[:, 0] if views == 0 else valid
    # Values are scaled so that their mean is the mean over valid anchors.
    scale = valid.size / valid.sum()
    np.testing.assert_allclose(values, expected * scale, rtol=1e-5, atol=1e-5)
    mean = SupConLoss(temperature, base)(labels, x.astype("float32"))
    np.testing.assert_allclose(mean, expected[valid].mean(), rtol=1e-5)


def test_anchors_without_positive_are_masked_not_nan(rng):
    labels = np.array([0, 1, 2, 2])  # only the two 2s have a positive
    x = rng.normal(size=(4, 3)).astype("float32")
    values = np.asarray(supcon_loss(labels, x))
    assert np.all(np.isfinite(values)) and values[0] == 0 and values[1] == 0
    expected, valid = ref.supcon(labels, x, 0.1)
    np.testing.assert_allclose(SupConLoss()(labels, x), expected[valid].mean(), rtol=1e-5)


def test_no_positive_at_all_gives_zero(rng):
    x = rng.normal(size=(3, 4)).astype("float32")
    assert float(SupConLoss()(np.array([0, 1, 2]), x)) == 0.0


def test_labels_must_be_integers(rng):
    x = rng.normal(size=(4, 2, 3)).astype("float32")
    with pytest.raises(TypeError, match="y_true"):
        SupConLoss()(np.array([0.0, 1.0, 0.0, 1.0]), x)
    with pytest.raises(ValueError, match="y_true"):
        SupConLoss()(None, x)
