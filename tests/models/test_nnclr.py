"""NNCLR in ContrastiveModel: nearest-neighbour positives, the support set, saving, replicas."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import Record, head, mlp, pair_dataset, view_pairs

import keras_contrastive as kc
from keras_contrastive.losses.nnclr_loss import NNCLRLoss
from keras_contrastive.methods.nnclr import NNCLR

BATCH = 4
TAU = 0.1


def nnclr(queue_size=3 * BATCH, predictor="mlp", **kwargs):
    method = NNCLR(queue_size=queue_size, predictor=predictor)
    return kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=method, **kwargs)


def compile_(model, optimizer=None):
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.02))
    return model


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def nearest(z, support):
    """The row of `support` of largest cosine with each row of `z`, with a loop."""
    return np.stack([support[np.argmax([unit(row) @ unit(s) for s in support])] for row in z])


def info_nce(queries, keys, tau=TAU):
    """(B,) −log softmax over the keys, at the query's own key."""
    logits = unit(queries) @ unit(keys).T / tau
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - np.diag(logits)


def paper_loss(z, p, support, tau=TAU):
    """½ [L(NN(z1), p2) + L(NN(z2), p1)] of (B, 2, D) projections and predictions."""
    n1, n2 = nearest(z[:, 0], support), nearest(z[:, 1], support)
    return 0.5 * (info_nce(n1, p[:, 1], tau) + info_nce(n2, p[:, 0], tau)).mean()


def key_gradient(queries, keys, tau=TAU):
    """d mean(info_nce) / d keys: (softmax − I)ᵀ q̂ / (Bτ), through the keys' normalization."""
    q, k = unit(queries), unit(keys)
    logits = q @ k.T / tau
    soft = np.exp(logits - logits.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    d = (soft - np.eye(len(q))).T @ q / (len(q) * tau)
    norm = np.linalg.norm(np.asarray(keys, np.float64), axis=-1, keepdims=True)
    return (d - np.sum(d * k, axis=-1, keepdims=True) * k) / norm


def projections(model, x):
    return np.asarray(model.projection_head(model.encoder(x)))


# ------------------------------------------------------------ the loss of a batch
def test_positives_are_nearest_neighbours_and_the_gradient_reaches_the_predictions():
    rng = np.random.default_rng(1)
    support = unit(rng.normal(size=(5, 4)))
    # Each projection a scaled, noisy copy of a chosen support row: its neighbour is known.
    chosen = np.array([[3, 2], [0, 2], [4, 0], [1, 3]])
    z = support[chosen] * rng.uniform(0.5, 3.0, size=(BATCH, 2, 1))
    z += rng.normal(scale=0.05, size=z.shape)
    p = rng.normal(size=(BATCH, 2, 4))
    model = compile_(nnclr(queue_size=5, predictor=None))
    model.method.support_set.keys.assign(support.astype("float32"))
    z_var, p_var = tf.Variable(z.astype("float32")), tf.Variable(p.astype("float32"))
    embedded = {"embeddings": p_var, "projections": z_var, "representation": None}
    with tf.GradientTape(persistent=True) as tape:
        step = model.method.finish(model, kc.methods.Prepared(None), embedded)
        loss = model.loss(step.y_true, step.y_pred)
    n1, n2 = nearest(z[:, 0], support), nearest(z[:, 1], support)
    np.testing.assert_allclose(n1, support[chosen[:, 0]])
    np.testing.assert_allclose(step.y_pred, np.stack([n1, p[:, 1], n2, p[:, 0]], 1), atol=1e-6)
    assert step.embeddings is z_var and step.y_true is None
    np.testing.assert_allclose(loss, paper_loss(z, p, support), rtol=1e-5)
    expected = np.stack([0.5 * key_gradient(n2, p[:, 0]), 0.5 * key_gradient(n1, p[:, 1])], 1)
    np.testing.assert_allclose(tape.gradient(loss, p_var), expected, rtol=1e-4, atol=1e-6)
    assert tape.gradient(loss, z_var) is None  # the neighbours are looked up without gradient


def test_a_training_step_scores_the_models_projections_against_the_support_set():
    model = compile_(nnclr(queue_size=8, predictor=None))
    first, second = (v[:BATCH] for v in view_pairs())
    z = np.stack([projections(model, first), projections(model, second)], axis=1)
    support = model.method.support_set.keys.numpy()
    history = model.fit(pair_dataset(n=BATCH), epochs=1, verbose=0, shuffle=False)
    # Without a predictor p = z; the neighbours are the initial random unit rows.
    np.testing.assert_allclose(history.history["loss"][0], paper_loss(z, z, support), rtol=1e-5)
    assert isinstance(model.loss, NNCLRLoss) and model.loss.temperature == TAU


# ---------------------------------------------------------------- the support set
def test_support_set_is_a_fifo_of_the_first_views_projections():
    model = compile_(nnclr(queue_size=3 * BATCH))
    initial = model.method.support_set.keys.numpy()
    np.testing.assert_allclose(np.linalg.norm(initial, axis=1), 1.0, rtol=1e-6)
    assert len(np.unique(initial.round(5), axis=0)) == 3 * BATCH  # random, not constant
    first_views, _ = view_pairs()
    batches = iter(range(4))
    before = Record(
        lambda m: unit(projections(m, first_views[BATCH * next(batches) :][:BATCH])), "begin"
    )
    after = Record(
        lambda m: (m.method.support_set.keys.numpy(), int(m.method.support_set.pointer.numpy()))
    )
    model.fit(pair_dataset(), epochs=1, verbose=0, callbacks=[before, after], shuffle=False)
    z1, z2, z3, z4 = before.values
    (q1, p1), (_, p2), (q3, p3), (q4, p4) = after.values
    assert [p1, p2, p3, p4] == [4, 8, 0, 4]
    np.testing.assert_allclose(q1[:4], z1, atol=1e-6)
    np.testing.assert_array_equal(q1[4:], initial[4:])  # not yet overwritten
    np.testing.assert_allclose(q3, np.concatenate([z1, z2, z3]), atol=1e-6)
    np.testing.assert_allclose(q4, np.concatenate([z4, z2, z3]), atol=1e-6)  # oldest replaced
    model.evaluate(pair_dataset(), verbose=0)  # evaluation writes nothing
    np.testing.assert_array_equal(model.method.support_set.keys.numpy(), q4)
    assert int(model.method.support_set.pointer.numpy()) == 4


# ---------------------------------------------------------------------- training
def test_training_decreases_the_loss_with_the_papers_predictor():
    model = compile_(nnclr(queue_size=16))
    predictor = model.method.predictor
    assert [type(layer).__name__ for layer in predictor.layers] == [
        "Dense",
        "BatchNormalization",
        "ReLU",
        "Dense",
    ]
    assert predictor.layers[0].units == 16 * 4 and predictor.output_shape == (None, 4)
    trainable = {id(w) for w in model.trainable_weights}
    assert {id(w) for w in predictor.trainable_weights} <= trainable
    x, noisy = view_pairs(32)
    history = model.fit((x, noisy), batch_size=8, epochs=8, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy"}
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    # Also once the support set holds projections only (from the third step); seeds 0-5:
    # a ratio of 0.58-0.79.
    assert history["loss"][-1] < 0.9 * history["loss"][1]


def test_gradient_caching_equals_the_plain_step():
    plain = compile_(nnclr(predictor=keras.layers.Dense(4)))
    initial = plain.get_weights()
    plain.fit(pair_dataset(n=2 * BATCH), epochs=1, verbose=0, shuffle=False)
    cached = nnclr(predictor=keras.layers.Dense(4), gradient_cache_chunks=2)
    cached.set_weights(initial)
    compile_(cached).fit(pair_dataset(n=2 * BATCH), epochs=1, verbose=0, shuffle=False)
    for got, want in zip(cached.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_two_replicas_equal_one_device_on_the_same_global_batch():
    global_batch = 2 * BATCH

    def model():  # plain SGD: the update is proportional to the gradient
        method = NNCLR(queue_size=2 * global_batch, predictor=keras.layers.Dense(4))
        return compile_(
            kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=method),
            keras.optimizers.SGD(0.5),
        )

    single = model()
    initial = single.get_weights()
    data = pair_dataset(global_batch, n=3 * global_batch)
    single.fit(data, epochs=1, verbose=0, shuffle=False)  # 3 steps: the set wraps
    strategy = cpu_strategy(2)
    with strategy.scope():
        mirrored = model()
        mirrored.set_weights(initial)
    mirrored.fit(data, epochs=1, verbose=0, shuffle=False)
    support = mirrored.method.support_set
    assert int(support.pointer.numpy()) == global_batch
    for got, want in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    first, second = strategy.experimental_local_results(support.keys.value)
    np.testing.assert_array_equal(first, second)  # every replica wrote all projections


# ------------------------------------------------------------------------ saving
class SaveAfterFirstEpoch(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.saved = path, None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.save(self.path)
            support = self.model.method.support_set
            self.saved = self.model.get_weights(), support.keys.numpy(), int(support.pointer)


def test_keras_round_trip_keeps_the_support_set_and_continues_identically(tmp_path):
    model = compile_(nnclr())
    save = SaveAfterFirstEpoch(tmp_path / "nnclr.keras")
    # Saved after 4 steps (the set wrapped), then one more epoch.
    model.fit(pair_dataset(), epochs=2, verbose=0, shuffle=False, callbacks=[save])
    weights, keys, pointer = save.saved
    restored = keras.models.load_model(tmp_path / "nnclr.keras")
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config())
    assert isinstance(restored.method, NNCLR) and restored.method.queue_size == 3 * BATCH
    np.testing.assert_array_equal(restored.method.support_set.keys.numpy(), keys)
    assert int(restored.method.support_set.pointer.numpy()) == pointer == 4
    for got, want in zip(restored.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)  # predictor and its BN statistics included
    restored.fit(pair_dataset(), epochs=1, verbose=0, shuffle=False)
    for got, want in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_config_round_trips_each_predictor_option():
    options = ((None, None), ("mlp", "Sequential"), (keras.layers.Dense(4), "Dense"))
    for predictor, expected in options:
        config = NNCLR(queue_size=16, predictor=predictor).get_config()
        json.dumps(config)
        rebuilt = NNCLR.from_config(config)
        assert rebuilt.queue_size == 16
        model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=rebuilt)
        got = model.method.predictor
        assert (got if got is None else type(got).__name__) == expected
        assert model.method.support_set.keys.shape == (16, 4)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=NNCLR(16))
    again = kc.ContrastiveModel.from_config(json.loads(json.dumps(model.get_config())))
    assert isinstance(again.method.predictor, keras.Sequential)


def test_without_a_predictor_the_projections_are_the_keys():
    model = compile_(nnclr(predictor=None))
    first, second = (v[:BATCH] for v in view_pairs())
    step = model.forward(((first, second),), training=False)
    np.testing.assert_allclose(step.y_pred[:, 1], projections(model, second), atol=1e-6)
    np.testing.assert_allclose(step.y_pred[:, 3], projections(model, first), atol=1e-6)
    assert tuple(step.embeddings.shape) == (BATCH, 2, 4)


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "queue_size, error", [(0, ValueError), (2.5, TypeError), (None, TypeError)]
)
def test_bad_queue_size_is_refused(queue_size, error):
    with pytest.raises(error, match="`queue_size` must be an int >= 1"):
        NNCLR(queue_size=queue_size)


def test_bad_predictors_models_and_losses_are_refused():
    with pytest.raises(ValueError, match=r"`predictor` must be one of \['mlp'\]"):
        NNCLR(predictor="linear")
    with pytest.raises(TypeError, match='`predictor` must be "mlp", None or a keras.layers.Layer'):
        NNCLR(predictor=4)
    with pytest.raises(ValueError, match="4-d projections to 4-d predictions.*output dim 3"):
        nnclr(predictor=keras.layers.Dense(3))
    with pytest.raises(ValueError, match="NNCLR trains one `encoder`.*DualEncoder"):
        kc.ContrastiveModel(image_encoder=mlp(), text_encoder=mlp(), method=NNCLR(16))
    wrong_loss = "NNCLR trains with a loss.*NTXentLoss declares.*kc.losses.NNCLRLoss"
    with pytest.raises(ValueError, match=wrong_loss):
        nnclr().compile(loss=kc.losses.NTXentLoss())
