"""`MomentumEncoder`: frozen copies, the EMA update, inference mode, saving, replicas."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import mlp, numpy_weights

import keras_contrastive as kc
from keras_contrastive.layers import MomentumEncoder, ProjectionHead


def cnn_and_head():
    """A `small_cnn` (with BN) and a built `ProjectionHead` with BN: `(B, 8, 8, 3) -> (B, 4)`."""
    encoder = kc.encoders.small_cnn(input_shape=(8, 8, 3), width=2)
    head = ProjectionHead(hidden_dims=(6,), output_dim=4)
    head.build(encoder.output.shape)
    return [encoder, head]


def images(rng, n=4):
    return rng.uniform(size=(n, 8, 8, 3)).astype("float32")


def built_dense(units=3, input_dim=5, use_bias=True):
    dense = keras.layers.Dense(units, use_bias=use_bias)
    dense.build((None, input_dim))
    return dense


def perturb(layers, rng):
    """Sets every float weight of `layers` to new random values (an optimizer step)."""
    for layer in layers:
        for w in layer.weights:
            w.assign(w.numpy() + rng.normal(scale=0.5, size=w.shape).astype(w.dtype))


def ema(targets, sources, m):
    return [m * t + (1 - m) * s for t, s in zip(targets, sources, strict=True)]


@keras.saving.register_keras_serializable(package="tests")
class Scale(keras.layers.Layer):
    """Multiplies by a learned vector; records no build config, so a copy needs a shape."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_build_config(self):
        return None


@keras.saving.register_keras_serializable(package="tests")
class Counted(keras.layers.Layer):
    """A learned bias and an int32 step counter."""

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros")
        self.step = self.add_weight(shape=(), dtype="int32", initializer="zeros")

    def call(self, x):
        return x + self.bias


# ------------------------------------------------------------------ copy_of
def test_copy_of_gives_frozen_named_copies_with_equal_outputs(rng):
    towers = cnn_and_head()
    key = MomentumEncoder.copy_of(towers, momentum=0.9)
    assert key.name == "momentum_encoder" and key.built and key.momentum == 0.9
    assert [t.name for t in key.towers] == ["key_small_cnn", f"key_{towers[1].name}"]
    assert all(tower is not copy for tower, copy in zip(towers, key.towers, strict=True))
    assert not key.trainable_weights and all(not t.trainable for t in key.towers)
    assert len(key.non_trainable_weights) == len(key.weights) == 29
    for got, want in zip(numpy_weights(key.towers), numpy_weights(towers), strict=True):
        np.testing.assert_array_equal(got, want)
    x = images(rng)
    want = towers[1](towers[0](x, training=False), training=False)
    np.testing.assert_array_equal(key(x), want)
    assert all(t.trainable for t in towers)  # the sources are left as they were


def test_a_single_tower_is_accepted():
    source = built_dense()
    key = MomentumEncoder.copy_of(source)
    assert len(key.towers) == 1 and key.momentum == 0.999
    key.update(source)


def test_towers_given_directly_are_frozen_and_built_on_first_call(rng):
    towers = [keras.layers.Dense(5), ProjectionHead(hidden_dims=(6,), output_dim=4)]
    key = MomentumEncoder(towers, momentum=0.5)
    assert not key.built and key.towers == towers
    x = rng.normal(size=(3, 7)).astype("float32")
    assert key(x).shape == (3, 4) and key.built
    assert key.compute_output_shape((None, 7)) == (None, 4)
    assert not key.trainable_weights and len(key.weights) == 11  # 2 + 5 + 4 (ProjectionHead)


def test_output_has_no_gradient(rng):
    towers = cnn_and_head()
    key = MomentumEncoder.copy_of(towers)
    x = tf.constant(images(rng))
    variables = [w.value for w in key.weights]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, *variables])
        out = tf.reduce_sum(key(x))
        unstopped = tf.reduce_sum(key.towers[1](key.towers[0](x, training=False)))
    assert tape.gradient(out, x) is None
    assert all(g is None for g in tape.gradient(out, variables))
    assert tape.gradient(unstopped, x) is not None  # the watch alone would give gradients


def test_unbuilt_tower_is_refused():
    encoder, _ = cnn_and_head()
    with pytest.raises(ValueError, match=r"Tower 1 \(`unbuilt_head`\) is not built"):
        MomentumEncoder.copy_of([encoder, ProjectionHead(output_dim=4, name="unbuilt_head")])


def test_copy_is_built_from_the_output_shape_of_the_tower_before(rng):
    encoder = mlp(input_dim=6, output_dim=8)
    scale = Scale(name="scale")
    scale.build((None, 8))
    scale.scale.assign(rng.normal(size=8).astype("float32"))
    key = MomentumEncoder.copy_of([encoder, scale])
    assert key.towers[1].built and key.towers[1].scale.shape == (8,)
    np.testing.assert_array_equal(key.towers[1].scale.numpy(), scale.scale.numpy())
    with pytest.raises(ValueError, match=r"tower 0 \(`scale`\): its input shape is unknown"):
        MomentumEncoder.copy_of([scale])


# ------------------------------------------------------------------ call
def test_call_runs_in_inference_mode_even_when_training(rng):
    source = mlp(dropout=0.5)
    key = MomentumEncoder.copy_of(source)
    x = rng.normal(size=(16, 6)).astype("float32")
    first, second = key(x, training=True), key(x, training=True)
    np.testing.assert_array_equal(first, second)  # no dropout
    dense = key.towers[0].layers[1]
    want = np.tanh(x @ dense.kernel.numpy() + dense.bias.numpy())
    np.testing.assert_allclose(first, want, rtol=1e-6, atol=1e-6)


def test_call_never_updates_batch_norm_statistics(rng):
    key = MomentumEncoder.copy_of(cnn_and_head())
    before = numpy_weights(key.towers)
    x = images(rng)
    out = key(x, training=True)
    for got, want in zip(numpy_weights(key.towers), before, strict=True):
        np.testing.assert_array_equal(got, want)
    # In inference mode BN normalizes with the moving statistics, whatever the batch.
    np.testing.assert_allclose(key(x[:1]), out[:1], rtol=1e-5, atol=1e-6)


def test_batch_statistics_normalize_each_batch_with_its_own_statistics(rng):
    """As the source in training mode, eagerly and traced; the flags stay frozen."""
    sources = cnn_and_head()
    key = MomentumEncoder.copy_of(sources, batch_statistics=True)
    x = images(rng, n=6)
    norms = [
        layer
        for tower in key.towers
        for layer in tower._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms
    traced = tf.function(lambda x: key(x))
    frozen = numpy_weights(key.towers)
    for call in (key, traced):
        out = call(x)
        want = x
        for source in sources:
            want = source(want, training=True)  # batch statistics
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
        assert not np.allclose(out[:1], key.towers[1](key.towers[0](x[:1])), atol=1e-3)
        assert not key.trainable_weights and not any(layer.trainable for layer in norms)
        for got, want in zip(numpy_weights(key.towers), frozen, strict=True):
            np.testing.assert_array_equal(got, want)  # moving statistics included
    config = key.get_config()
    assert config["batch_statistics"] is True
    assert MomentumEncoder.from_config(config).batch_statistics is True


def test_batch_statistics_keep_dropout_off(rng):
    source = mlp(dropout=0.5)
    key = MomentumEncoder.copy_of(source, batch_statistics=True)
    x = rng.normal(size=(16, 6)).astype("float32")
    first, second = key(x), tf.function(lambda x: key(x))(x)
    np.testing.assert_allclose(first, source(x, training=False), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(second, first, rtol=1e-6, atol=1e-6)
    assert key.towers[0].layers[-1].rate == 0.5  # restored after the call
    with pytest.raises(TypeError, match="`batch_statistics`"):
        MomentumEncoder(mlp(), batch_statistics="yes")


# ------------------------------------------------------------------ update
@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_update_is_an_ema_of_a_dense_tower(momentum, rng):
    source = built_dense()
    key = MomentumEncoder.copy_of(source, momentum=momentum)
    expected = numpy_weights(key.towers)
    for _ in range(3):
        perturb([source], rng)
        key.update(source)
        expected = ema(expected, numpy_weights([source]), momentum)
        for got, want in zip(numpy_weights(key.towers), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    if momentum == 0.0:
        np.testing.assert_array_equal(key.towers[0].kernel.numpy(), source.kernel.numpy())


def test_batch_norm_moving_statistics_follow_the_source(rng):
    head = ProjectionHead(hidden_dims=(6,), output_dim=4, batch_norm=True)
    head.build((None, 5))
    key = MomentumEncoder.copy_of(head, momentum=0.8)
    expected = numpy_weights(key.towers)
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(2):
        x = rng.normal(loc=2.0, size=(16, 5)).astype("float32")
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(head(x, training=True)))
        optimizer.apply(tape.gradient(loss, head.trainable_weights), head.trainable_weights)
        key.update([head])
        expected = ema(expected, numpy_weights([head]), 0.8)
        for got, want in zip(numpy_weights(key.towers), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    moving_mean = [w for w in key.towers[0].weights if "moving_mean" in w.path][0]
    assert np.abs(moving_mean.numpy()).max() > 1e-3  # the statistics moved from 0


def test_update_in_a_tf_function(rng):
    towers = cnn_and_head()
    key = MomentumEncoder.copy_of(towers, momentum=0.7)
    update = tf.function(key.update)
    expected = numpy_weights(key.towers)
    for _ in range(2):  # the second call runs the traced graph with new source values
        perturb(towers, rng)
        update(towers)
        expected = ema(expected, numpy_weights(towers), 0.7)
    for got, want in zip(numpy_weights(key.towers), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_integer_weights_are_left_alone():
    source = Counted()
    source.build((None, 3))
    key = MomentumEncoder.copy_of(source, momentum=0.5)
    source.step.assign(10)
    source.bias.assign([2.0, 4.0, 6.0])
    key.update(source)
    assert int(key.towers[0].step.numpy()) == 0
    np.testing.assert_allclose(key.towers[0].bias.numpy(), [1.0, 2.0, 3.0])


def test_a_momentum_override_applies_to_its_update_only(rng):
    source = built_dense()
    key = MomentumEncoder.copy_of(source, momentum=0.9)
    expected = numpy_weights(key.towers)
    for momentum in (0.3, np.float32(0.6), tf.constant(0.75), 1.0, 0.0, None):
        perturb([source], rng)
        before = numpy_weights(key.towers)
        key.update(source, momentum=momentum)
        m = 0.9 if momentum is None else float(momentum)
        expected = ema(expected, numpy_weights([source]), m)
        for got, want in zip(numpy_weights(key.towers), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        if m == 1.0:  # leaves the weights exactly as they were
            for got, want in zip(numpy_weights(key.towers), before, strict=True):
                np.testing.assert_array_equal(got, want)
    assert key.momentum == 0.9 and key.get_config()["momentum"] == 0.9


def test_a_momentum_schedule_in_a_tf_function(rng):
    towers = cnn_and_head()
    key = MomentumEncoder.copy_of(towers, momentum=0.99)
    step = tf.Variable(0)

    @tf.function
    def update():  # the momentum is a symbolic tensor of the step, as in a train step
        key.update(towers, momentum=0.5 + 0.25 * tf.cast(step, "float32"))

    expected = numpy_weights(key.towers)
    for k in range(3):  # 0.5, 0.75, then 1.0: the traced graph reads the new step
        perturb(towers, rng)
        update()
        expected = ema(expected, numpy_weights(towers), 0.5 + 0.25 * k)
        step.assign_add(1)
    for got, want in zip(numpy_weights(key.towers), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "momentum, error",
    [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError), ("0.5", TypeError)],
)
def test_a_momentum_override_outside_the_closed_unit_interval_is_refused(momentum, error):
    source = built_dense()
    key = MomentumEncoder.copy_of(source)
    before = numpy_weights(key.towers)
    with pytest.raises(error, match=r"`momentum` must be a finite number in \[0, 1\]"):
        key.update(source, momentum=momentum)
    for got, want in zip(numpy_weights(key.towers), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_update_on_two_replicas_assigns_each_local_copy(rng):
    strategy = cpu_strategy(2)
    with strategy.scope():
        towers = cnn_and_head()  # BatchNormalization's moving statistics included
        key = MomentumEncoder.copy_of(towers, momentum=0.6)
    start = numpy_weights(key.towers)
    perturb(towers, rng)  # cross-replica assignment: the sources stay synchronized

    @tf.function
    def step():
        strategy.run(key.update, args=(towers,))

    step()
    expected = ema(start, numpy_weights(towers), 0.6)
    for weight, want in zip(key.weights, expected, strict=True):
        replicas = strategy.experimental_local_results(weight.value)
        assert len(replicas) == 2
        for local in replicas:
            np.testing.assert_allclose(local, want, rtol=1e-6, atol=1e-7)


def test_mismatched_sources_are_refused():
    key = MomentumEncoder.copy_of(built_dense(units=3))
    with pytest.raises(ValueError, match="one layer per tower: 1. Received 2"):
        key.update([built_dense(), built_dense()])
    with pytest.raises(ValueError, match="1 weights. Received 2 weights"):
        MomentumEncoder.copy_of(built_dense(use_bias=False)).update(built_dense())
    with pytest.raises(ValueError, match=r"of shape \(5, 4\) for .* of shape \(5, 3\)"):
        key.update(built_dense(units=4))
    with pytest.raises(TypeError, match="`sources` must be a keras.layers.Layer"):
        key.update("dense")


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "momentum, error",
    [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError), (float("nan"), ValueError)]
    + [(True, TypeError), ("0.9", TypeError), (None, TypeError)],
)
def test_momentum_outside_unit_interval_is_refused(momentum, error):
    with pytest.raises(error, match=r"`momentum` must be a finite number in \[0, 1\)"):
        MomentumEncoder([built_dense()], momentum=momentum)
    with pytest.raises(error, match="`momentum`"):
        MomentumEncoder.copy_of(built_dense(), momentum=momentum)


def test_towers_must_be_layers():
    with pytest.raises(TypeError, match=r"Received: towers\[1\]='head'"):
        MomentumEncoder([built_dense(), "head"])
    with pytest.raises(ValueError, match="non-empty list"):
        MomentumEncoder([])


# ------------------------------------------------------------------ saving
def test_config_round_trips():
    key = MomentumEncoder.copy_of(cnn_and_head(), momentum=0.99, name="key")
    config = key.get_config()
    json.dumps(config)
    assert config["momentum"] == 0.99 and len(config["towers"]) == 2
    again = MomentumEncoder.from_config(config)
    assert (again.name, again.momentum, again.built) == ("key", 0.99, True)
    assert [t.name for t in again.towers] == [t.name for t in key.towers]
    assert not again.trainable_weights
    assert [w.shape for w in again.weights] == [w.shape for w in key.weights]
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(key))
    assert isinstance(again, MomentumEncoder) and again.built


def test_keras_save_and_load_keeps_the_weights(tmp_path, rng):
    towers = cnn_and_head()
    key = MomentumEncoder.copy_of(towers, momentum=0.9)
    perturb(towers, rng)
    key.update(towers)  # the key weights now differ from a fresh copy's
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, key(inputs))
    model.save(tmp_path / "key.keras")
    restored = keras.models.load_model(tmp_path / "key.keras")
    loaded = restored.layers[-1]
    assert isinstance(loaded, MomentumEncoder) and loaded.momentum == 0.9
    assert not restored.trainable_weights
    for got, want in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    x = images(rng)
    np.testing.assert_array_equal(restored(x), model(x))
    loaded.update(towers)  # the loaded layer still pairs with the sources
