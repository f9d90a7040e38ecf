import numpy as np
import pytest
import references as ref

from keras_contrastive.losses import InfoNCELoss, info_nce_loss


@pytest.mark.parametrize(
    "batch,dim,temperature,queue", [(2, 3, 0.07, 0), (6, 5, 0.2, 7), (9, 4, 1.0, 1)]
)
def test_values_match_reference(rng, batch, dim, temperature, queue):
    x = rng.normal(size=(batch, 2, dim))
    negatives = rng.normal(size=(queue, dim)) if queue else None
    values = info_nce_loss(
        None,
        x.astype("float32"),
        temperature,
        None if negatives is None else negatives.astype("float32"),
    )
    expected = ref.info_nce(x, temperature, negatives)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_negative_keys_in_class_round_trip(rng):
    negatives = rng.normal(size=(3, 4)).astype("float32")
    loss = InfoNCELoss(temperature=0.1, negative_keys=negatives)
    clone = InfoNCELoss.from_config(loss.get_config())
    x = rng.normal(size=(4, 2, 4)).astype("float32")
    np.testing.assert_allclose(clone(None, x), loss(None, x), rtol=1e-6)
    np.testing.assert_allclose(loss(None, x), ref.info_nce(x, 0.1, negatives).mean(), rtol=1e-5)


def test_negative_keys_shape_is_checked(rng):
    x = rng.normal(size=(4, 2, 4)).astype("float32")
    with pytest.raises(ValueError, match="negative_keys"):
        info_nce_loss(None, x, negative_keys=np.ones((3, 5), "float32"))
    with pytest.raises(ValueError, match="negative_keys"):
        info_nce_loss(None, x, negative_keys=np.ones((3,), "float32"))
    with pytest.raises(ValueError, match="negative_keys"):
        info_nce_loss(None, x, negative_keys=np.full((3, 4), np.nan, "float32"))
