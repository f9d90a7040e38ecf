"""MoCo in ContrastiveModel: EMA key towers, the queue of keys, saving, replicas."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import Record, mlp, numpy_weights, pair_dataset, view_pairs

import keras_contrastive as kc
from keras_contrastive import losses
from keras_contrastive.layers import KeyQueue

BATCH = 4
TAU = 0.2


def moco(momentum=0.9, queue_size=3 * BATCH, batch_norm=False, **kwargs):
    return kc.ContrastiveModel(
        encoder=mlp(),
        projection_head=kc.layers.ProjectionHead(
            hidden_dims=(8,), output_dim=4, batch_norm=batch_norm
        ),
        momentum=momentum,
        queue_size=queue_size,
        **kwargs,
    )


def compile_(model, lr=0.5):
    model.compile(optimizer=keras.optimizers.SGD(lr), loss=losses.InfoNCELoss(TAU))
    return model


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_key_towers_are_an_ema_of_the_query_towers_and_not_trained():
    model = compile_(moco(momentum=0.9, batch_norm=True))
    trainable = {id(w) for w in model.trainable_weights}
    keys = model.method.key_encoder.towers  # the key copies of the encoder and the head
    assert len(keys) == 2
    queries = [model.encoder, model.projection_head]
    assert not trainable & {id(w) for layer in keys for w in layer.weights}
    assert trainable == {id(w) for layer in queries for w in layer.trainable_weights}
    key_weights = [numpy_weights(keys)]
    np.testing.assert_array_equal(
        np.concatenate([w.ravel() for w in key_weights[0]]),
        np.concatenate([w.ravel() for w in numpy_weights(queries)]),
    )
    record = Record(lambda m: (numpy_weights(queries), numpy_weights(keys)))
    model.fit(pair_dataset(), epochs=1, verbose=0, callbacks=[record], shuffle=False)
    for query_after, key_after in record.values:
        # The EMA reads the query weights after the optimizer step; the BN
        # moving statistics (in `weights`, not trained) follow the same way.
        expected = [0.9 * k + 0.1 * q for k, q in zip(key_weights[-1], query_after, strict=True)]
        for got, want in zip(key_after, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        key_weights.append(key_after)
    assert np.abs(key_weights[-1][0] - key_weights[0][0]).max() > 1e-3


def current_keys(model, view):
    """The step's keys, computed independently from the model's key towers."""
    key_encoder, key_projection_head = model.method.key_encoder.towers
    key = key_projection_head(key_encoder(view, training=False), training=False)
    return normalize(np.asarray(key))


def test_queue_is_fifo_of_the_keys_with_wrap_around():
    model = compile_(moco(queue_size=3 * BATCH))
    initial = model.method.key_queue.keys.numpy()
    np.testing.assert_allclose(np.linalg.norm(initial, axis=1), 1.0, rtol=1e-6)
    assert len(np.unique(initial.round(5), axis=0)) == 3 * BATCH  # random, not constant
    _, second_views = view_pairs()
    step = iter(range(4))
    before = Record(lambda m: current_keys(m, second_views[BATCH * next(step) :][:BATCH]), "begin")
    after = Record(
        lambda m: (m.method.key_queue.keys.numpy(), int(m.method.key_queue.pointer.numpy()))
    )
    model.fit(pair_dataset(), epochs=1, verbose=0, callbacks=[before, after], shuffle=False)
    k1, k2, k3, k4 = before.values
    (q1, p1), (_, p2), (q3, p3), (q4, p4) = after.values
    assert [p1, p2, p3, p4] == [4, 8, 0, 4]
    np.testing.assert_allclose(q1[:4], k1, atol=1e-6)
    np.testing.assert_array_equal(q1[4:], initial[4:])  # not yet overwritten
    np.testing.assert_allclose(q3, np.concatenate([k1, k2, k3]), atol=1e-6)
    np.testing.assert_allclose(q4, np.concatenate([k4, k2, k3]), atol=1e-6)  # oldest replaced


def test_loss_scores_queries_against_batch_keys_and_queue():
    model = compile_(moco(queue_size=8))
    first_views, second_views = (v[:BATCH] for v in view_pairs())
    queries = normalize(np.asarray(model.projection_head(model.encoder(first_views))))
    keys = current_keys(model, second_views)
    candidates = np.concatenate([keys, model.method.key_queue.keys.numpy()])
    logits = queries @ candidates.T / TAU
    top = logits.max(axis=1)
    logsumexp = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    expected = np.mean(logsumexp - np.sum(queries * keys, axis=1) / TAU)
    history = model.fit(pair_dataset(n=BATCH), epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
    assert model.loss.negative_keys is None  # the compiled loss is left as it was


def test_resume_from_saved_model_or_weights_continues_identically(tmp_path):
    model = compile_(moco(), lr=0.1)
    model.fit(pair_dataset(), epochs=1, verbose=0, shuffle=False)  # 4 steps: the queue wrapped
    model.save(tmp_path / "moco.keras")
    model.save_weights(tmp_path / "moco.weights.h5")
    restored = keras.models.load_model(tmp_path / "moco.keras")
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config())
    from_weights = compile_(moco(), lr=0.1)
    from_weights.load_weights(tmp_path / "moco.weights.h5")
    for other in (restored, from_weights):
        assert (
            int(other.method.key_queue.pointer.numpy())
            == int(model.method.key_queue.pointer.numpy())
            == 4
        )
        for got, want in zip(other.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)  # keys, queue and key towers included
    for run in (model, restored, from_weights):
        run.fit(pair_dataset(), epochs=1, verbose=0, shuffle=False)
    for other in (restored, from_weights):
        for got, want in zip(other.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6)


def test_two_replicas_equal_one_device_on_the_same_global_batch():
    global_batch = 2 * BATCH
    single = compile_(moco(queue_size=2 * global_batch))
    initial = single.get_weights()
    single.fit(pair_dataset(global_batch, n=3 * global_batch), epochs=1, verbose=0)  # wraps
    strategy = cpu_strategy(2)
    with strategy.scope():
        mirrored = compile_(moco(queue_size=2 * global_batch))
        mirrored.set_weights(initial)
    mirrored.fit(pair_dataset(global_batch, n=3 * global_batch), epochs=1, verbose=0)
    assert int(mirrored.method.key_queue.pointer.numpy()) == global_batch
    for got, want in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    for variable in [*mirrored.method.key_encoder.weights, mirrored.method.key_queue.keys]:
        first, second = strategy.experimental_local_results(variable.value)
        np.testing.assert_array_equal(first, second)  # every replica made the same update


def test_gradient_caching_with_momentum_equals_the_plain_step():
    plain = compile_(moco())
    initial = plain.get_weights()
    plain.fit(pair_dataset(), epochs=1, verbose=0, shuffle=False)
    cached = moco(gradient_cache_chunks=2)
    cached.set_weights(initial)
    compile_(cached).fit(pair_dataset(), epochs=1, verbose=0, shuffle=False)
    for got, want in zip(cached.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_config_round_trips():
    config = moco(momentum=0.99, queue_size=16).get_config()
    json.dumps(config)
    method = config["method"]
    assert method["class_name"] == "MoCo"
    assert (method["config"]["momentum"], method["config"]["queue_size"]) == (0.99, 16)
    rebuilt = kc.ContrastiveModel.from_config(config)
    assert isinstance(rebuilt.method, kc.methods.MoCo)
    assert (rebuilt.method.momentum, rebuilt.method.queue_size) == (0.99, 16)
    assert rebuilt.method.key_queue.keys.shape == (16, 4)
    queue = KeyQueue(size=8, dim=3, seed=5)
    again = KeyQueue.from_config(queue.get_config())
    np.testing.assert_array_equal(again.keys.numpy(), queue.keys.numpy())  # seeded init


def test_without_a_queue_the_negatives_are_the_batch_keys():
    model = compile_(moco(queue_size=None))
    assert model.method.key_queue is None
    history = model.fit(pair_dataset(), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# ------------------------------------------------------------------ bad input
# Values out of range are `ValueError`s, values of the wrong type `TypeError`s
# (the shared validators, keras_contrastive/ops/_validation.py).
@pytest.mark.parametrize(
    "momentum, error",
    [
        (-0.1, ValueError),
        (1.0, ValueError),
        (1.5, ValueError),
        ("0.9", TypeError),
        (True, TypeError),
    ],
)
def test_momentum_outside_unit_interval_is_refused(momentum, error):
    with pytest.raises(error, match=r"`momentum` must be a finite number in \[0, 1\)"):
        moco(momentum=momentum)


@pytest.mark.parametrize("queue_size, error", [(0, ValueError), (2.5, TypeError), ("8", TypeError)])
def test_bad_queue_size_is_refused(queue_size, error):
    with pytest.raises(error, match="`queue_size` must be an int >= 1"):
        moco(queue_size=queue_size)


def test_unsupported_momentum_combinations_are_refused():
    with pytest.raises(ValueError, match="`queue_size` needs a momentum encoder"):
        kc.ContrastiveModel(encoder=mlp(), queue_size=16)
    with pytest.raises(ValueError, match="`momentum`.*for one `encoder`.*dual encoder=True"):
        kc.ContrastiveModel(image_encoder=mlp(), text_encoder=mlp(), momentum=0.9)
    with pytest.raises(ValueError, match="`momentum`.*takes no other `method`"):
        kc.ContrastiveModel(encoder=mlp(), momentum=0.9, method=kc.methods.TwoView())
    with pytest.raises(ValueError, match="MoCo trains with a loss.*negative_keys.*NTXentLoss"):
        moco().compile(loss=losses.NTXentLoss())
    with pytest.raises(ValueError, match="negative_keys=None"):
        moco().compile(loss=losses.InfoNCELoss(negative_keys=np.ones((4, 4))))

    class Unbuilt(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="`MomentumEncoder.copy_of` needs built towers"):
        kc.ContrastiveModel(encoder=Unbuilt(), momentum=0.9)


def fifo(queue, pointer, keys):
    """NumPy reference: writes `keys` one by one at `pointer`, wrapping around."""
    queue = queue.copy()
    for key in keys:
        queue[pointer] = key
        pointer = (pointer + 1) % len(queue)
    return queue, pointer


def batches(sizes):
    """A dataset of the `view_pairs()` cut into consecutive batches of the given sizes."""
    first_views, second_views = view_pairs(sum(sizes))
    starts = np.cumsum([0, *sizes])
    parts = [
        tf.data.Dataset.from_tensors(((first_views[a:b], second_views[a:b]),))
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset, [second_views[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]


@pytest.mark.parametrize(
    "queue_size, sizes, epochs",
    [
        # After 4, 4, 2 and 4 keys the pointer is at 6: the next batch of 4
        # (epoch 2) goes to rows 6, 7, 0, 1.
        (8, [4, 4, 2, 4], 2),
        (8, [4, 2, 4], 1),  # the third batch straddles the end of the queue
        (10, [4, 4, 4], 1),  # queue_size not a multiple of the batch
        (4, [6, 2, 6], 1),  # a batch larger than the queue leaves its newest keys
    ],
)
def test_queue_stays_fifo_for_any_batch_sizes(queue_size, sizes, epochs):
    model = compile_(moco(queue_size=queue_size))
    data, second_views = batches(sizes)
    step = iter(second_views * epochs)
    before = Record(lambda m: current_keys(m, next(step)), "begin")
    after = Record(
        lambda m: (m.method.key_queue.keys.numpy(), int(m.method.key_queue.pointer.numpy()))
    )
    queue, pointer = model.method.key_queue.keys.numpy(), 0
    model.fit(data, epochs=epochs, verbose=0, callbacks=[before, after])
    assert len(after.values) == len(sizes) * epochs
    for keys, (got_queue, got_pointer) in zip(before.values, after.values, strict=True):
        queue, pointer = fifo(queue, pointer, keys)
        assert got_pointer == pointer
        np.testing.assert_allclose(got_queue, queue, atol=1e-6)
