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


SCALES = [1e-20, 1.0, 1e20]


def _as_float32(x):
    """A float64 value as float32 rounds it: inf beyond the float32 range."""
    with np.errstate(over="ignore"):
        return np.asarray(x, np.float64).astype(np.float32)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean"])
def test_distances_are_right_at_any_scale(scale, distance):
    x = (np.random.default_rng(0).normal(size=(5, 3)) * scale).astype("float32")
    y = (np.random.default_rng(1).normal(size=(5, 3)) * scale).astype("float32")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    sq = ((x64[:, None] - y64[None]) ** 2).sum(-1)
    expected = sq if distance == "squared_euclidean" else np.sqrt(sq)
    tiny = np.finfo(np.float32).tiny  # TensorFlow flushes float32 results below it to 0
    np.testing.assert_allclose(
        kops.pairwise_distance(x, y, distance), _as_float32(expected), rtol=1e-5, atol=tiny
    )
    np.testing.assert_allclose(
        kops.paired_distance(x, y, distance), _as_float32(np.diag(expected)), rtol=1e-5, atol=tiny
    )
    self_distance = np.asarray(kops.pairwise_distance(x, distance=distance))
    assert np.all(np.diag(self_distance) == 0)


@pytest.mark.parametrize("scale", SCALES)
def test_euclidean_distance_gradients_are_right_at_any_scale(scale):
    import tensorflow as tf

    x = (np.random.default_rng(0).normal(size=(5, 3)) * scale).astype("float32")
    y = (np.random.default_rng(1).normal(size=(5, 3)) * scale).astype("float32")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    diff = x64[:, None] - y64[None]
    unit = diff / np.linalg.norm(diff, axis=-1, keepdims=True)  # d ||x_i - y_j|| / d x_i
    variable = tf.Variable(x)
    with tf.GradientTape(persistent=True) as tape:
        pairwise = tf.reduce_sum(kops.pairwise_distance(variable, y))
        paired = tf.reduce_sum(kops.paired_distance(variable, y))
    np.testing.assert_allclose(tape.gradient(pairwise, variable), unit.sum(1), rtol=1e-4)
    np.testing.assert_allclose(
        tape.gradient(paired, variable), unit[np.arange(5), np.arange(5)], rtol=1e-4
    )
    with tf.GradientTape() as tape:  # coinciding points: gradient 0, not NaN
        same = tf.reduce_sum(kops.paired_distance(variable, tf.identity(variable)))
    np.testing.assert_array_equal(tape.gradient(same, variable), 0.0)
