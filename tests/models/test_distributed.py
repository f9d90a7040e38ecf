"""ContrastiveModel under MirroredStrategy on logical CPUs equals one device."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy

import keras_contrastive as kc
from keras_contrastive import losses

GLOBAL_BATCH = 8


def mlp(input_dim=6, output_dim=8):
    inputs = keras.Input((input_dim,))
    return keras.Model(inputs, keras.layers.Dense(output_dim, activation="tanh")(inputs))


def head():
    return kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4, batch_norm=False)


def make(kind):
    if kind == "clip":
        return kc.ContrastiveModel(
            image_encoder=mlp(),
            text_encoder=mlp(5),
            image_head=head(),
            text_head=head(),
            logit_scale="learnable",
        )
    return kc.ContrastiveModel(encoder=mlp(), projection_head=head())


LOSSES = {
    "ntxent": losses.NTXentLoss(0.2),
    "supcon": losses.SupConLoss(0.2),
    "clip": losses.CLIPLoss(),
}


def dataset(kind):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(GLOBAL_BATCH, 6)).astype("float32")
    b = (a + rng.normal(scale=0.3, size=a.shape)).astype("float32")
    labels = np.array([0, 1, 0, 2, 1, 3, 3, 0], "int32")  # label 2 has no positive
    if kind == "clip":
        data = {"image": a, "text": b[:, :5]}
    elif kind == "supcon":
        data = ((a, b), labels)
    else:
        data = (a, b)
    return tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH)


@pytest.mark.parametrize("num_replicas", [2, 4])
@pytest.mark.parametrize("kind", ["ntxent", "supcon", "clip"])
def test_one_step_matches_single_device(kind, num_replicas):
    single = make(kind)
    initial = single.get_weights()
    single.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSSES[kind])
    expected = single.fit(dataset(kind), epochs=1, verbose=0).history

    with cpu_strategy(num_replicas).scope():
        mirrored = make(kind)
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSSES[kind])
    got = mirrored.fit(dataset(kind), epochs=1, verbose=0).history

    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    assert any(
        np.abs(w - w0).max() > 1e-3 for w, w0 in zip(single.get_weights(), initial, strict=True)
    )
    for w_mirrored, w_single in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(w_mirrored, w_single, atol=1e-5)


def test_in_step_augmentation_differs_across_replicas():
    strategy = cpu_strategy(2)
    with strategy.scope():
        model = kc.ContrastiveModel(
            encoder=kc.encoders.small_cnn(input_shape=(8, 8, 3), width=4),
            augmenter=kc.layers.SimCLRAugmentation(image_size=(8, 8), value_range=(0, 1)),
        )
        model.compile(optimizer="sgd")
    images = tf.constant(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)), "float32")

    def views(x):
        return model._views(x, training=True, seed=model._step_seed(training=True))

    per_replica = strategy.run(tf.function(views), args=(images,))
    first, second = strategy.experimental_local_results(per_replica)
    assert np.abs(np.asarray(first) - np.asarray(second)).max() > 1e-3
    again = strategy.experimental_local_results(strategy.run(tf.function(views), args=(images,)))
    np.testing.assert_array_equal(again[0], first)  # same step, same seed: replayable


def test_replica_batches_of_one_are_refused():
    with cpu_strategy(2).scope():
        model = make("ntxent")
        model.compile(optimizer="sgd")
    tiny = dataset("ntxent").unbatch().batch(2).take(1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than 2 examples"):
        model.fit(tiny, epochs=1, verbose=0)
