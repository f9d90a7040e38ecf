import keras
import numpy as np
import pytest

import keras_contrastive as kc

SIZE = 8


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("encoder") / "saved"
    kc.export.export_encoder(kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=2), path)
    return str(path)


def data(n=16, seed=0):
    x = np.random.default_rng(seed).uniform(size=(n, SIZE, SIZE, 3)).astype("float32")
    return x, (x[..., 0].mean(axis=(1, 2)) > 0.5).astype("int32")


def classifier(encoder):
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(encoder(inputs)))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(True))
    return model


@pytest.mark.parametrize("trainable", [True, False])
def test_fit_updates_the_encoder_only_when_trainable(artifact, trainable):
    encoder = kc.export.SavedModelEncoder(artifact, trainable=trainable)
    weights = encoder.saved_weights
    before = [w.numpy() for w in weights]
    history = classifier(encoder).fit(*data(), batch_size=8, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    changed = [np.any(b != w.numpy()) for b, w in zip(before, weights, strict=True)]
    # Trainable: every weight moves (kernels by the optimizer, moving statistics in
    # training mode). Frozen: none, and the encoder runs in inference mode.
    assert all(changed) if trainable else not any(changed)
    assert len(encoder.weights) == len(weights)
    assert (len(encoder.trainable_weights) > 0) == trainable


def test_config_and_keras_file_round_trip(artifact, tmp_path):
    encoder = kc.export.SavedModelEncoder(artifact, trainable=False, name="enc")
    config = encoder.get_config()
    assert config["filepath"] == artifact and config["trainable"] is False
    assert kc.export.SavedModelEncoder.from_config(config).get_config() == config
    model = classifier(kc.export.SavedModelEncoder(artifact))
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # weights differ from the artifact's
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
