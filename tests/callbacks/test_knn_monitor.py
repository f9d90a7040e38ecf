"""KNNMonitor puts `knn_accuracy` into the Keras logs and History during fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.callbacks import KNNMonitor
from keras_contrastive.evaluation import knn_accuracy


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    x = (3 * np.eye(6)[labels] + rng.normal(size=(60, 6))).astype("float32")
    return x, labels


def make_model():
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="embed")])


def fit(model, data, callbacks, epochs=2, verbose=0):
    x, _ = data
    model.compile(optimizer="sgd", loss="mse")
    return model.fit(
        x, x[:, :4], epochs=epochs, batch_size=20, callbacks=callbacks, verbose=verbose
    )


def test_history_gets_the_final_knn_accuracy(data):
    x, y = data
    model = make_model()
    history = fit(model, data, [KNNMonitor((x[:40], y[:40]), (x[40:], y[40:]), k=5)])
    values = history.history["knn_accuracy"]
    assert len(values) == 2
    embeddings = model.predict(x, verbose=0)
    want = knn_accuracy(embeddings[:40], y[:40], embeddings[40:], y[40:], k=5)["top1"]
    assert values[-1] == pytest.approx(want)


def test_every_n_epochs_and_encoder_submodel_with_datasets(data):
    x, y = data
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="encoder"), keras.layers.Dense(4)]
    )
    encoder = keras.Model(model.inputs[0], model.get_layer("encoder").output)
    train = tf.data.Dataset.from_tensor_slices((x[:40], y[:40])).batch(16)
    monitor = KNNMonitor(train, (x[40:], y[40:]), every_n_epochs=2, k=3, encoder=encoder)
    history = fit(model, data, [monitor], epochs=4)
    assert len(history.history["knn_accuracy"]) == 2
    embeddings = encoder.predict(x, verbose=0)
    want = knn_accuracy(embeddings[:40], y[:40], embeddings[40:], y[40:], k=3)["top1"]
    assert history.history["knn_accuracy"][-1] == pytest.approx(want)


def test_reaches_history_listed_before_it_and_the_progress_bar(data, capsys):
    x, y = data
    history = keras.callbacks.History()
    fit(make_model(), data, [history, KNNMonitor((x, y), (x, y), k=5)], verbose=2)
    assert len(history.history["knn_accuracy"]) == 2
    assert capsys.readouterr().out.count("knn_accuracy") == 2


def test_bad_arguments(data):
    x, y = data
    with pytest.raises(ValueError, match="`every_n_epochs`"):
        KNNMonitor((x, y), (x, y), every_n_epochs=0)
    with pytest.raises(ValueError, match="`val_data`"):
        fit(make_model(), data, [KNNMonitor((x, y), (x, y[:5]), k=5)], epochs=1)
    with pytest.raises(ValueError, match="`k`"):
        fit(make_model(), data, [KNNMonitor((x[:3], y[:3]), (x, y), k=5)], epochs=1)
