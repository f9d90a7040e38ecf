"""Tests for `resnet`: the CIFAR ResNet-18 and the keras.applications depths."""

import keras
import numpy as np
import pytest

from keras_contrastive.encoders import resnet


@pytest.fixture(scope="module")
def resnet18():
    return resnet(depth=18)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")


def test_resnet18_is_the_cifar_form(resnet18, images):
    assert resnet18.name == "resnet18"
    assert resnet18(images).shape == (2, 512)
    convs = [layer for layer in resnet18.layers if isinstance(layer, keras.layers.Conv2D)]
    # A 3x3 stride-1 stem, 16 block convs and 3 projection shortcuts; no max-pool.
    assert len(convs) == 20
    assert convs[0].kernel_size == (3, 3) and convs[0].strides == (1, 1)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in resnet18.layers)
    # 32x32 is downsampled 3 times, to 4x4, before pooling.
    assert resnet18.get_layer("stage4_block2_out").output.shape[1:] == (4, 4, 512)
    assert 11.1e6 < resnet18.count_params() < 11.2e6  # ResNet-18's 11.2 M, without the fc layer


def test_resnet18_round_trips_and_loads_weights_files(resnet18, images, tmp_path):
    path = str(tmp_path / "resnet18.keras")
    resnet18.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(
        restored.predict(images, verbose=0), resnet18.predict(images, verbose=0)
    )
    weights = str(tmp_path / "resnet18.weights.h5")
    resnet18.save_weights(weights)
    loaded = resnet(depth=18, weights=weights)
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), resnet18.predict(images, verbose=0)
    )


def test_resnet18_trains_a_few_steps(images):
    encoder = resnet(input_shape=(16, 16, 1), depth=18)
    model = keras.Sequential([encoder, keras.layers.Dense(2)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    x = images[:, :16, :16, :1]
    history = model.fit(x, np.array([0, 1]), epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_resnet50_from_keras_applications(images):
    encoder = resnet(input_shape=(32, 32, 3), depth=50, name="backbone")
    assert encoder.name == "backbone"
    assert encoder(images).shape == (2, 2048)
    # keras.applications' ImageNet stem: a 7x7 stride-2 conv and a max-pool.
    assert encoder.get_layer("conv1_conv").kernel_size == (7, 7)
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in encoder.layers)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"depth": 34}, "depth"),
        ({"depth": True}, "depth"),
        ({"weights": "imagenet"}, "weights"),
        ({"weights": "/nonexistent/weights.h5"}, "weights"),
        ({"depth": 50, "input_shape": (16, 16, 3)}, "input_shape"),
        ({"input_shape": (32, 32)}, "input_shape"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        resnet(**kwargs)
