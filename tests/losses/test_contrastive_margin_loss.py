import numpy as np
import pytest
import references as ref

from keras_contrastive.losses import ContrastiveMarginLoss, contrastive_margin_loss


@pytest.mark.parametrize("margin", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_values_match_reference(rng, margin, squared, distance):
    x = rng.normal(scale=0.7, size=(8, 2, 4))
    q = rng.integers(0, 2, size=8)
    values = contrastive_margin_loss(q, x.astype("float32"), margin, squared, distance)
    expected = ref.contrastive_margin(q, x, margin, squared, distance)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)


def test_identical_similar_pair_has_zero_loss_and_gradient():
    import tensorflow as tf

    x = tf.Variable(np.ones((2, 2, 3), "float32"))
    with tf.GradientTape() as tape:
        loss = ContrastiveMarginLoss(squared=False)(np.array([1, 1]), x)
    assert float(loss) == 0.0
    np.testing.assert_array_equal(tape.gradient(loss, x), 0.0)


def test_labels_other_than_zero_and_one_are_refused(rng):
    x = rng.normal(size=(3, 2, 4)).astype("float32")
    with pytest.raises(ValueError, match="y_true"):
        ContrastiveMarginLoss()(np.array([0, 1, 2]), x)


def test_squared_euclidean_is_not_a_pair_distance():
    with pytest.raises(ValueError, match="distance"):
        ContrastiveMarginLoss(distance="squared_euclidean")
