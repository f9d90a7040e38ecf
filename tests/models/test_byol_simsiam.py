"""BYOL and SimSiam on the training core: predictor, EMA target, saving, export, replicas."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import (
    Record,
    assert_export_holds_the_encoder_only,
    head,
    mlp,
    numpy_weights,
    resumed_and_straight,
)

import keras_contrastive as kc
from keras_contrastive.losses.prediction_losses import BYOLLoss, SimSiamLoss, byol_loss
from keras_contrastive.methods.byol import BYOL
from keras_contrastive.methods.simsiam import SimSiam, symmetric_rows
from keras_contrastive.metrics.embedding_std import EmbeddingStd

BATCH = 4
METHODS = {"simsiam": SimSiam, "byol": BYOL}


def pairs(n=4 * BATCH, seed=0):
    """`n` fixed `(view_1, view_2)` pairs of 6-d features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x + rng.normal(scale=0.3, size=x.shape)).astype("float32")


def dataset(batch=BATCH, n=4 * BATCH):
    """Batches of `((view_1, view_2),)`, in a fixed order."""
    return tf.data.Dataset.from_tensor_slices((pairs(n),)).batch(batch)


def make(method, lr=0.1, optimizer=None, **kwargs):
    """`mlp()` and a 4-d `head()` trained by `method`, compiled with its default loss."""
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=method, **kwargs)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(lr))
    return model


def normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def weighted_std(x, weights):
    """The mean over dims of NumPy's std with reliability weights (`np.cov`'s `aweights`)."""
    return np.sqrt(np.diag(np.cov(x.T, aweights=weights))).mean()


def online(model, views, training=False):
    """Projections and predictions `(B, 2, D)`, computed from the towers themselves."""
    z = [
        model.projection_head(model.encoder(v, training=training), training=training) for v in views
    ]
    p = [model.method.predictor(zv, training=training) for zv in z]
    return np.stack(z, axis=1), np.stack(p, axis=1)


def targets(model, views):
    """BYOL's target projections `(B, 2, D)`, from the target towers themselves."""
    encoder, projection_head = model.method.target_encoder.towers
    return np.stack([projection_head(encoder(v, training=False), training=False) for v in views], 1)


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("name", sorted(METHODS))
def test_training_decreases_the_loss_and_reports_the_collapse_monitor(name):
    model = make(METHODS[name](), optimizer=keras.optimizers.Adam(0.01))
    assert isinstance(model.loss, BYOLLoss if name == "byol" else SimSiamLoss)
    assert isinstance(model.method, kc.methods.TwoView)
    history = model.fit(dataset(n=32), epochs=6, verbose=0, shuffle=False).history
    assert [m.name for m in model.metrics] == ["loss", "embedding_std"]
    assert history["loss"][-1] < history["loss"][0] - 0.1
    # Not collapsed: the spread of 4-d unit projections stays near 1 / sqrt(4) = 0.5.
    assert min(history["embedding_std"]) > 0.2


@pytest.mark.parametrize("name", sorted(METHODS))
def test_rows_score_the_mean_of_the_two_directions(name):
    model = make(METHODS[name]())
    views = pairs(BATCH)
    step = model.forward((views,), training=False)
    z, p = online(model, views)
    t = targets(model, views) if name == "byol" else z
    np.testing.assert_allclose(step.embeddings, z, rtol=1e-6, atol=1e-6)  # the metrics' input
    assert tuple(step.y_pred.shape) == (BATCH, 2, 8) and step.y_true is None
    cos_12 = np.sum(normalize(p[:, 0]) * normalize(t[:, 1]), axis=-1)
    cos_21 = np.sum(normalize(p[:, 1]) * normalize(t[:, 0]), axis=-1)
    per_direction = 2 - 2 * (cos_12 + cos_21) / 2 if name == "byol" else -(cos_12 + cos_21) / 2
    np.testing.assert_allclose(model.loss(None, step.y_pred), per_direction.mean(), rtol=1e-5)


def test_sample_weights_weight_the_examples_of_the_loss_and_the_metrics():
    model = make(BYOL())
    model.compile(metrics=[kc.metrics.ContrastiveAccuracy()])
    views = pairs(BATCH)
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    step = model.forward((views, None, weights), training=False)
    per_example = byol_loss(None, step.y_pred).numpy()
    loss = model.step_loss(step, training=False)
    np.testing.assert_allclose(loss, np.sum(per_example * weights) / BATCH, rtol=1e-6)
    results = model.compute_metrics(None, None, step, step.sample_weight)
    assert set(results) == {"loss", "embedding_std", "contrastive_accuracy"}
    z = np.asarray(step.embeddings)
    want = np.mean([weighted_std(normalize(z[:, v]), weights) for v in (0, 1)])
    np.testing.assert_allclose(results["embedding_std"], want, rtol=1e-5)


def test_one_row_per_example_has_the_gradient_of_the_two_directions(rng):
    """The concatenated unit halves give the 2B-row loss's value and gradient."""
    predictions = tf.constant(rng.normal(size=(5, 2, 3)))
    target = tf.constant(rng.normal(size=(5, 2, 3)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(predictions)
        one_row = tf.reduce_mean(byol_loss(None, symmetric_rows(predictions, target)))
        first = tf.stack([predictions[:, 0], target[:, 1]], axis=1)  # (p1, z2) rows
        both = tf.concat([first, tf.stack([predictions[:, 1], target[:, 0]], axis=1)], 0)
        two_rows = tf.reduce_mean(byol_loss(None, both))
    np.testing.assert_allclose(one_row, two_rows, rtol=1e-12)
    np.testing.assert_allclose(
        tape.gradient(one_row, predictions), tape.gradient(two_rows, predictions), atol=1e-12
    )


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", sorted(METHODS))
def test_gradients_reach_the_online_towers_and_predictor_through_the_predictions_only(name):
    model = make(METHODS[name]())
    views = pairs(BATCH)
    z, _ = online(model, views, training=True)
    fixed = targets(model, views) if name == "byol" else z  # constants: no gradient
    fixed = normalize(fixed).astype("float32")
    frozen = [] if name == "simsiam" else [w.value for w in model.method.target_encoder.weights]
    weights = model.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(frozen)
        loss = model.step_loss(model.forward((views,), training=True), training=True)
        # The paper's loss with the targets as constants: the gradient through p only.
        p = [_prediction(model, v) for v in views]
        cos_12 = tf.reduce_sum(tf.math.l2_normalize(p[0], -1) * fixed[:, 1], -1)
        cos_21 = tf.reduce_sum(tf.math.l2_normalize(p[1], -1) * fixed[:, 0], -1)
        values = 2 - (cos_12 + cos_21) if name == "byol" else -(cos_12 + cos_21) / 2
        reference = tf.reduce_mean(values)
    np.testing.assert_allclose(loss, reference, rtol=1e-5)
    predictor = {id(w) for w in model.method.predictor.trainable_weights}
    assert predictor and predictor <= {id(w) for w in weights}
    for weight, got, want in zip(
        weights, tape.gradient(loss, weights), tape.gradient(reference, weights), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        if id(weight) in predictor and len(weight.shape) == 2:
            assert np.abs(got).max() > 1e-6  # the predictor learns
    if frozen:
        assert not {id(w) for w in model.method.target_encoder.weights} & {id(w) for w in weights}
        assert all(g is None for g in tape.gradient(loss, frozen))


def _prediction(model, view):
    z = model.projection_head(model.encoder(view, training=True), training=True)
    return model.method.predictor(z, training=True)


# ------------------------------------------------------------------ EMA target
def schedule(base, k, total):
    """BYOL's τ_k, written from the paper, with the schedule held at 1 after K steps."""
    if total is None:
        return base
    return 1 - (1 - base) * (math.cos(math.pi * min(k, total) / total) + 1) / 2


@pytest.mark.parametrize("total_steps", [3, None])
def test_target_is_the_ema_of_the_online_towers_on_the_cosine_schedule(total_steps):
    model = make(BYOL(momentum=0.5, total_steps=total_steps), lr=0.5)
    sources = [model.encoder, model.projection_head]
    target = model.method.target_encoder.towers
    assert [t.name for t in target] == ["key_" + s.name for s in sources]
    before = numpy_weights(target)
    for got, want in zip(before, numpy_weights(sources), strict=True):
        np.testing.assert_array_equal(got, want)  # a copy at the start
    record = Record(lambda m: (numpy_weights(sources), numpy_weights(target)))
    model.fit(dataset(n=5 * BATCH), epochs=1, verbose=0, shuffle=False, callbacks=[record])
    taus = [schedule(0.5, k, total_steps) for k in range(5)]
    if total_steps:
        np.testing.assert_allclose(taus, [0.5, 0.625, 0.875, 1.0, 1.0])  # 1 from k = K on
    for k, (online_after, target_after) in enumerate(record.values):
        tau = taus[k]
        expected = [tau * t + (1 - tau) * o for t, o in zip(before, online_after, strict=True)]
        for got, want in zip(target_after, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        before = target_after
    moved = np.abs(record.values[-1][0][0] - record.values[0][0][0]).max()
    assert moved > 1e-3  # the online towers trained, and the target followed


def test_momentum_at_is_the_schedule():
    method = BYOL(momentum=0.99, total_steps=10)
    for k in (0, 1, 5, 9, 10, 25):
        np.testing.assert_allclose(float(method.momentum_at(k)), schedule(0.99, k, 10), rtol=1e-7)
    assert BYOL(momentum=0.9).momentum_at(7) == 0.9


# ------------------------------------------------------------------ saving
def test_keras_round_trip_restores_predictor_and_target(tmp_path):
    model = make(BYOL(momentum=0.9, total_steps=12), optimizer=keras.optimizers.Adam(0.01))
    model.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "byol.keras")
    restored = keras.models.load_model(tmp_path / "byol.keras")
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config())
    assert isinstance(restored.method, BYOL)
    assert (restored.method.momentum, restored.method.total_steps) == (0.9, 12)
    for got, want in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)  # predictor and target towers included
    assert int(restored.optimizer.iterations) == 4  # where the schedule of τ continues
    views = pairs(BATCH, seed=1)
    np.testing.assert_array_equal(restored(views[0]), model(views[0]))
    for got, want in zip(online(restored, views), online(model, views), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(targets(restored, views), targets(model, views))


def test_simsiam_config_round_trips_with_a_given_predictor():
    predictor = kc.layers.ProjectionHead(hidden_dims=(6,), output_dim=4, name="my_predictor")
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=SimSiam(predictor))
    assert model.method.predictor is predictor and predictor.built
    config = model.get_config()
    json.dumps(config)
    rebuilt = kc.ContrastiveModel.from_config(config)
    assert isinstance(rebuilt.method, SimSiam)
    assert rebuilt.method.predictor.name == "my_predictor"
    assert rebuilt.method.predictor.hidden_dims == (6,)
    default = kc.ContrastiveModel(encoder=mlp(), projection_head=head(40), method=SimSiam())
    dense = [layer for layer in default.method.predictor.layers if "dense" in layer.name]
    assert [d.units for d in dense] == [10, 40]  # SimSiam's bottleneck D // 4
    default = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=BYOL())
    dense = [layer for layer in default.method.predictor.layers if "dense" in layer.name]
    assert [d.units for d in dense] == [64, 4]  # BYOL's 16 · D


def test_backup_and_restore_resume_keeps_the_target(tmp_path):
    def fresh():
        keras.utils.set_random_seed(0)
        return make(BYOL(momentum=0.9, total_steps=8), optimizer=keras.optimizers.Adam(0.01))

    resumed, straight = resumed_and_straight(fresh, dataset, tmp_path / "backup")
    np.testing.assert_allclose(targets(resumed, pairs()), targets(straight, pairs()), atol=1e-6)


def test_export_holds_the_encoder_only(tmp_path):
    encoder = kc.encoders.small_cnn(input_shape=(8, 8, 3), width=2)
    model = kc.ContrastiveModel(encoder=encoder, projection_head=head(4), method=BYOL())
    assert_export_holds_the_encoder_only(model, encoder, tmp_path / "encoder")


# ------------------------------------------------------------------ replicas
@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_replicas_equal_one_device_on_the_same_global_batch(name):
    """A predictor without BatchNormalization: per-replica batch statistics would differ."""

    def method():
        predictor = kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4, batch_norm=False)
        return (
            BYOL(predictor, momentum=0.8, total_steps=4) if name == "byol" else SimSiam(predictor)
        )

    global_batch = 2 * BATCH
    single = make(method())
    initial = single.get_weights()
    want = single.fit(
        dataset(global_batch, n=3 * global_batch), epochs=1, verbose=0, shuffle=False
    ).history
    strategy = cpu_strategy(2)
    with strategy.scope():
        mirrored = make(method())
        mirrored.set_weights(initial)
    got = mirrored.fit(
        dataset(global_batch, n=3 * global_batch), epochs=1, verbose=0, shuffle=False
    ).history
    for metric in ("loss", "embedding_std"):
        np.testing.assert_allclose(got[metric], want[metric], rtol=1e-5)
    for got_weight, want_weight in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got_weight, want_weight, atol=1e-5)
    if name == "byol":
        for variable in mirrored.method.target_encoder.weights:
            first, second = strategy.experimental_local_results(variable.value)
            np.testing.assert_array_equal(first, second)  # every replica made the same update


# ------------------------------------------------------------------ the metric
def test_embedding_std_matches_torch_std_of_normalized_embeddings(rng):
    x = rng.normal(size=(9, 2, 5)).astype("float32")
    metric = EmbeddingStd()
    metric.update_state(None, x)
    want = np.mean([normalize(x[:, v]).std(axis=0, ddof=1).mean() for v in range(2)])
    np.testing.assert_allclose(metric.result(), want, rtol=1e-5)
    second = rng.normal(size=(3, 5)).astype("float32")  # (B, D), a batch of another size
    metric.update_state(None, {"embeddings": second})
    second_value = normalize(second).std(axis=0, ddof=1).mean()
    np.testing.assert_allclose(metric.result(), (9 * want + 3 * second_value) / 12, rtol=1e-5)
    assert EmbeddingStd.from_config(metric.get_config()).name == "embedding_std"


def test_embedding_std_is_zero_at_collapse_and_near_one_over_sqrt_d_when_spread(rng):
    collapsed = EmbeddingStd()
    collapsed.update_state(None, np.tile(rng.normal(size=(1, 16)), (32, 1)) * 7.0)
    assert float(collapsed.result()) == 0.0  # exactly: the rows are shifted by the first
    spread = EmbeddingStd()
    spread.update_state(None, rng.normal(size=(4096, 16)).astype("float32"))
    np.testing.assert_allclose(spread.result(), 1 / np.sqrt(16), rtol=0.03)


def test_embedding_std_sample_weights_are_reliability_weights(rng):
    x = rng.normal(size=(6, 4)).astype("float32")
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.0, 0.5], "float32")
    metric = EmbeddingStd()
    metric.update_state(None, x, sample_weight=3.0 * weights)  # the scale does not matter
    np.testing.assert_allclose(metric.result(), weighted_std(normalize(x), weights), rtol=1e-5)
    binary = EmbeddingStd()  # weights of 0 and 1 leave examples out
    binary.update_state(None, x, sample_weight=(weights > 0).astype("float32"))
    kept = normalize(x[weights > 0]).std(axis=0, ddof=1).mean()
    np.testing.assert_allclose(binary.result(), kept, rtol=1e-5)
    one = EmbeddingStd()
    one.update_state(None, x[:1])
    assert float(one.result()) == 0.0


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"momentum": 1.0}, ValueError, r"`momentum` must be a finite number in \[0, 1\)"),
        ({"momentum": "0.99"}, TypeError, "`momentum`"),
        ({"total_steps": 0}, ValueError, "`total_steps` must be an int >= 1"),
        ({"total_steps": 2.5}, TypeError, "`total_steps`"),
        ({"predictor": "mlp"}, TypeError, "`predictor` must be None or a keras.layers.Layer"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        BYOL(**kwargs)


def test_a_predictor_of_another_output_dim_and_a_loss_of_another_contract_are_refused():
    wrong = kc.layers.ProjectionHead(hidden_dims=(), output_dim=3)
    with pytest.raises(ValueError, match="map the 4-d projections to 4-d predictions.*3"):
        kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=SimSiam(wrong))
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=BYOL())
    with pytest.raises(ValueError, match="BYOL trains with a loss whose.*SupConLoss declares"):
        model.compile(loss=kc.losses.SupConLoss())
