"""Linear probe: accuracy, determinism, inputs, few-labels mode."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from keras_contrastive.evaluation import linear_probe


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype("float32"), y[order]
    return (x[:1257], y[:1257]), (x[1257:], y[1257:])


def test_close_to_logistic_regression_and_deterministic(digits):
    train, test = digits
    got = linear_probe(None, train, test)
    mean, std = train[0].mean(axis=0), train[0].std(axis=0) + 1e-6
    reference = LogisticRegression(max_iter=2000).fit((train[0] - mean) / std, train[1])
    want = reference.score((test[0] - mean) / std, test[1])
    assert abs(got["top1"] - want) < 0.03
    assert got["top5"] >= got["top1"]
    assert linear_probe(None, train, test) == got


def test_top5_exceeds_top1_on_overlapping_classes(rng):
    # Ten overlapping classes: top-1 is imperfect, top-5 is higher.
    x = rng.normal(size=(300, 4)).astype("float32")
    y = rng.integers(0, 10, size=300)
    x[:, 0] += y * 0.3
    got = linear_probe(None, (x[:200], y[:200]), (x[200:], y[200:]))
    assert 0.1 < got["top1"] < got["top5"] < 1.0


def test_encoder_and_dataset_inputs(digits):
    (x, y), _ = digits
    encoder = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu")])
    train, test = (x[:300], y[:300]), (x[300:500], y[300:500])
    from_arrays = linear_probe(encoder, train, test, steps=50, batch_size=64)
    datasets = [tf.data.Dataset.from_tensor_slices(split).batch(50) for split in (train, test)]
    from_datasets = linear_probe(encoder, *datasets, steps=50)
    assert from_datasets == pytest.approx(from_arrays, abs=1e-6)
    features = (encoder.predict(x[:500], verbose=0), y[:500])
    from_features = linear_probe(
        None, (features[0][:300], y[:300]), (features[0][300:], y[300:500]), steps=50
    )
    assert from_features == pytest.approx(from_arrays, abs=1e-6)


def test_few_labels_mode(digits):
    train, test = digits
    got = linear_probe(None, train, test, labels_per_class=3, num_trials=2, steps=60)
    assert set(got) == {"top1", "top1_std", "top5", "top5_std"}
    assert 0.5 < got["top1"] < linear_probe(None, train, test, steps=60)["top1"]
    assert got["top1_std"] > 0
    again = linear_probe(None, train, test, labels_per_class=3, num_trials=2, steps=60)
    assert again == got


def test_trials_trained_together_equal_trials_trained_alone(digits):
    """All trials run in one batched loop; each must be the classifier it would be alone."""
    train, test = digits
    together = linear_probe(None, train, test, labels_per_class=2, num_trials=3, seed=4, steps=40)
    alone = [
        linear_probe(None, train, test, labels_per_class=2, num_trials=1, seed=4 + t, steps=40)
        for t in range(3)
    ]
    for key in ("top1", "top5"):
        values = [trial[key] for trial in alone]
        assert together[key] == pytest.approx(np.mean(values), abs=1e-9)
        assert together[f"{key}_std"] == pytest.approx(np.std(values), abs=1e-9)


def test_matches_keras_adam_on_a_dense_layer(digits):
    """The batched trainer takes Keras' Adam steps on a zero-initialized L2-penalized Dense."""
    (x, y), _ = digits
    x = (x[:100] - x[:100].mean(0)) / (x[:100].std(0) + 1e-6)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                10, kernel_initializer="zeros", kernel_regularizer=keras.regularizers.L2(1e-3)
            ),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y[:100], batch_size=100, epochs=25, shuffle=False, verbose=0)
    from keras_contrastive.evaluation.linear_probe import _train_softmax

    kernels, biases = _train_softmax(
        tf.constant(x[None]), tf.constant(y[None, :100]), 10, tf.constant(25), 0.01, 1e-3
    )
    np.testing.assert_allclose(kernels[0], model.layers[0].kernel, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(biases[0], model.layers[0].bias, rtol=1e-4, atol=5e-5)


def test_bad_input_names_the_argument(digits):
    train, test = digits
    with pytest.raises(ValueError, match="`train_data`"):
        linear_probe(None, (train[0], train[1][:10]), test)
    with pytest.raises(ValueError, match="`test_data`"):
        linear_probe(None, train, test[0])
    with pytest.raises(ValueError, match="`labels_per_class`"):
        linear_probe(None, train, test, labels_per_class=500)
    with pytest.raises(ValueError, match="`test_data`"):
        linear_probe(None, train, (test[0][:, :10], test[1]))
    with pytest.raises(ValueError, match="train_data"):
        linear_probe(None, (np.full_like(train[0], np.nan), train[1]), test)
    with pytest.raises(ValueError, match="`steps`"):
        linear_probe(None, train, test, steps=0)
