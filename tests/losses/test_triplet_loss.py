import numpy as np
import pytest
import references as ref

from keras_contrastive.losses import TripletLoss, triplet_loss

MINING = ["batch_all", "batch_hard", "semi_hard"]
DISTANCES = ["euclidean", "squared_euclidean", "cosine"]


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_mined_values_match_reference(rng, mining, distance, margin):
    labels = rng.integers(0, 3, size=10)
    x = rng.normal(size=(10, 4))
    loss = TripletLoss(margin=margin, mining=mining, distance=distance)
    expected = ref.triplet_mined(labels, x, margin, mining, distance)
    np.testing.assert_allclose(loss(labels, x.astype("float32")), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
def test_explicit_triplets_match_reference(rng, distance):
    x = rng.normal(size=(6, 3, 4))
    values = triplet_loss(None, x.astype("float32"), margin=0.5, distance=distance)
    expected = ref.triplet_explicit(x, 0.5, distance)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    # y_true is ignored for explicit triplets, whatever its dtype.
    np.testing.assert_allclose(
        TripletLoss(margin=0.5, distance=distance)(np.zeros(6, "float32"), x.astype("float32")),
        expected.mean(),
        rtol=1e-5,
    )


@pytest.mark.parametrize("mining", MINING)
def test_batch_without_positive_or_negative_gives_zero(rng, mining):
    x = rng.normal(size=(4, 3)).astype("float32")
    assert float(TripletLoss(mining=mining)(np.array([0, 1, 2, 3]), x)) == 0.0
    assert float(TripletLoss(mining=mining)(np.array([5, 5, 5, 5]), x)) == 0.0


def test_explicit_triplets_need_three_members(rng):
    with pytest.raises(ValueError, match="y_pred"):
        TripletLoss()(None, rng.normal(size=(4, 2, 3)).astype("float32"))
