import numpy as np
import pytest

from keras_contrastive import ops as kops


def test_l2_normalize_is_overflow_safe_and_keeps_zero():
    x = np.array([[3.0, 4.0], [3e30, 4e30], [0.0, 0.0], [1e-30, 0.0]], "float32")
    np.testing.assert_allclose(
        kops.l2_normalize(x), [[0.6, 0.8], [0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6
    )


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_pairwise_distance_matches_numpy(rng, distance):
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    diff = a[:, None] - b[None]
    expected = {
        "euclidean": np.sqrt((diff**2).sum(-1)),
        "squared_euclidean": (diff**2).sum(-1),
        "cosine": 1
        - (a / np.linalg.norm(a, axis=1, keepdims=True))
        @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T,
    }[distance]
    np.testing.assert_allclose(kops.pairwise_distance(a, b, distance), expected, atol=1e-6)
    self_distance = np.asarray(kops.pairwise_distance(a, distance=distance))
    np.testing.assert_allclose(np.diag(self_distance), 0.0, atol=1e-6)


def test_pairwise_distance_refuses_unknown_metric():
    with pytest.raises(ValueError, match="distance"):
        kops.pairwise_distance(np.ones((2, 2)), distance="manhattan")


def test_masked_log_softmax_matches_numpy_and_stays_finite():
    logits = np.array([[1.0, 2.0, 3.0], [5.0, -1.0, 0.0]], "float32")
    mask = np.array([[True, False, True], [False, False, False]])
    out = np.asarray(kops.masked_log_softmax(logits, mask))
    row = logits[0, [0, 2]]
    np.testing.assert_allclose(out[0, [0, 2]], row - np.log(np.exp(row).sum()), rtol=1e-6)
    assert np.all(np.isfinite(out))  # even the fully masked row
    assert np.all(out[0, 1] < -1e8)


def test_label_and_positive_masks():
    labels = np.array([0, 1, 0])
    np.testing.assert_array_equal(kops.label_mask(labels), [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(kops.positive_mask(labels), [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
