import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy

from keras_contrastive.layers import ProjectionHead


def _kinds(head):
    names = {
        keras.layers.Dense: "dense",
        keras.layers.BatchNormalization: "bn",
        keras.layers.Activation: "act",
    }
    return [names[type(layer)] for layer in head.sublayers]


@pytest.mark.parametrize(
    "hidden_dims, batch_norm, kinds",
    [
        ((16,), True, ["dense", "bn", "act", "dense", "bn"]),  # SimCLR v1
        ((16, 16), True, ["dense", "bn", "act"] * 2 + ["dense", "bn"]),  # v2
        ((), True, ["dense", "bn"]),  # linear
        ((16,), False, ["dense", "act", "dense"]),  # paper MLP
    ],
)
def test_shapes_and_layer_order(hidden_dims, batch_norm, kinds):
    head = ProjectionHead(hidden_dims=hidden_dims, output_dim=8, batch_norm=batch_norm)
    out = head(np.ones((4, 12), "float32"), training=True)
    assert out.shape == (4, 8)
    assert _kinds(head) == kinds
    dense = [layer for layer in head.sublayers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [*hidden_dims, 8]
    assert all(d.use_bias is (not batch_norm) for d in dense)


def test_batch_norm_placement_and_output_without_offset():
    head = ProjectionHead(hidden_dims=(6,), output_dim=4)
    head.build((None, 5))
    hidden_bn, output_bn = [
        layer for layer in head.sublayers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert hidden_bn.center and not output_bn.center
    assert hidden_bn.momentum == 0.9 and hidden_bn.epsilon == 1e-5
    # Kernels, BN gamma/beta of the hidden layer, BN gamma of the output.
    assert sorted(tuple(w.shape) for w in head.trainable_weights) == [
        (4,),
        (5, 6),
        (6,),
        (6,),
        (6, 4),
    ]


def test_output_is_batch_normalized_in_training(rng):
    head = ProjectionHead(hidden_dims=(32,), output_dim=8)
    out = head(rng.normal(size=(64, 10)).astype("float32"), training=True).numpy()
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-2)


def test_matches_numpy_without_batch_norm(rng):
    head = ProjectionHead(hidden_dims=(7,), output_dim=3, batch_norm=False)
    x = rng.normal(size=(5, 4)).astype("float32")
    out = head(x)
    w1, b1, w2, b2 = [w.numpy() for w in head.weights]
    expected = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_explicit_use_bias_and_activation():
    head = ProjectionHead(hidden_dims=(4,), output_dim=2, use_bias=True, activation="gelu")
    head.build((None, 3))
    assert all(layer.use_bias for layer in head.sublayers if isinstance(layer, keras.layers.Dense))
    assert head.sublayers[2].activation is keras.activations.gelu


def test_synchronized_flag_under_strategy(rng):
    head = ProjectionHead(hidden_dims=(4,), output_dim=2, synchronized=True)
    bns = [s for s in head.sublayers if isinstance(s, keras.layers.BatchNormalization)]
    assert bns and all(bn.synchronized for bn in bns)
    assert not any(
        s.synchronized
        for s in ProjectionHead(hidden_dims=(4,), output_dim=2).sublayers
        if isinstance(s, keras.layers.BatchNormalization)
    )
    strategy = cpu_strategy(1)  # its own collective keys
    with strategy.scope():
        head = ProjectionHead(hidden_dims=(4,), output_dim=2, synchronized=True)
        head.build((None, 3))
    x = rng.normal(size=(8, 3)).astype("float32")
    out = strategy.run(tf.function(lambda v: head(v, training=True)), args=(x,))
    np.testing.assert_allclose(np.asarray(out).mean(axis=0), 0.0, atol=1e-4)


def test_config_and_keras_round_trip(tmp_path, rng):
    head = ProjectionHead(hidden_dims=(6, 5), output_dim=3, activation="gelu", name="head")
    config = head.get_config()
    assert ProjectionHead.from_config(config).get_config() == config
    inputs = keras.Input((4,))
    model = keras.Model(inputs, head(inputs))
    x = rng.normal(size=(8, 4)).astype("float32")
    model(x, training=True)  # moves the BN statistics away from their init
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("head").get_config() == config


def test_trains_in_a_model(rng):
    model = keras.Sequential([keras.Input((4,)), ProjectionHead(hidden_dims=(8,), output_dim=2)])
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(16, 4)).astype("float32")
    history = model.fit(x, np.zeros((16, 2), "float32"), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"hidden_dims": 128}, "hidden_dims"),
        ({"hidden_dims": (0,)}, "hidden_dims"),
        ({"output_dim": 0}, "output_dim"),
        ({"batch_norm_epsilon": 0.0}, "batch_norm_epsilon"),
    ],
)
def test_bad_arguments(kwargs, name):  # wrong types: tests/test_arguments.py
    with pytest.raises(ValueError, match=f"`{name}`"):
        ProjectionHead(**kwargs)


@pytest.mark.parametrize("shape", [(2, 3, 4), (4,)])
def test_bad_input_rank(shape):
    with pytest.raises(ValueError, match=r"`inputs` must have shape \(batch_size, dim\)"):
        ProjectionHead(hidden_dims=(4,), output_dim=2)(np.ones(shape, "float32"))
