"""kc.callbacks.HardNegativeMiner: nearest non-positives, and the methods that train on them."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import CAPTIONS, clip_model, head, mlp, resumed_and_straight

import keras_contrastive as kc
from keras_contrastive import losses

N = 16  # training examples


def identity_model(dim=2):
    """One encoder, no head: the embeddings are the inputs (cosine = the angle)."""
    encoder = keras.Sequential([keras.Input((dim,)), keras.layers.Identity()])
    return kc.ContrastiveModel(encoder=encoder)


def unit(degrees):
    radians = np.deg2rad(np.asarray(degrees, "float64"))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype("float32")


def features(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (np.arange(n) % 3).astype("int32")


def supervised(chunks=1, loss=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(), gradient_cache_chunks=chunks)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss or losses.SupConLoss(0.2))
    return model


def supervised_data(miner, x, labels, batch=8):
    data = tf.data.Dataset.from_tensor_slices((x, labels))
    return miner.with_hard_negatives(data).batch(batch)


def dual_data():
    """`N` images, each with caption `i % 4` of CAPTIONS (its group id)."""
    images = np.random.default_rng(1).normal(size=(N, 6)).astype("float32")
    ids = (np.arange(N) % 4).astype("int32")
    texts = np.array([CAPTIONS[i] for i in ids])
    return images, texts, ids


def dual_miner(images, ids, num_hard_negatives=2):
    return kc.callbacks.HardNegativeMiner(
        images, ids, np.array(CAPTIONS), np.arange(4), num_hard_negatives=num_hard_negatives
    )


def dual_dataset(miner, images, texts, ids, batch=8):
    data = tf.data.Dataset.from_tensor_slices(({"image": images, "text": texts}, ids))
    return miner.with_hard_negatives(data).batch(batch)


def weights_changed(model, initial):
    return any(
        np.abs(w - w0).max() > 1e-4 for w, w0 in zip(model.get_weights(), initial, strict=True)
    )


def assert_same_weights(got, expected, atol=1e-5):
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=atol)


def count_mine(miner):
    """Wraps the instance's `mine`; returns the list the epochs of its calls go to."""
    calls, mine = [], miner.mine

    def counted(model):
        calls.append(model)
        return mine(model)

    miner.mine = counted
    return calls


class MinedEpochs(keras.callbacks.Callback):
    """Records `miner.mined_epoch` after the miner's `on_epoch_begin`."""

    def __init__(self, miner):
        super().__init__()
        self.miner, self.values = miner, []

    def on_epoch_begin(self, epoch, logs=None):
        self.values.append(self.miner.mined_epoch)


# ------------------------------------------------------------------ mining
def test_mine_known_neighbours_by_construction_and_never_a_positive():
    # Corpus = queries: each item's nearest is itself (same id), never returned.
    angles = [0, 10, 25, 45, 70, 100]
    ids = np.array([0, 1, 0, 1, 2, 2])
    x = unit(angles)
    miner = kc.callbacks.HardNegativeMiner(x, ids, x, ids, num_hard_negatives=2)
    mined = miner.mine(identity_model())
    expected = [[1, 3], [0, 2], [1, 3], [2, 4], [3, 2], [3, 2]]
    np.testing.assert_array_equal(mined, expected)
    assert mined.shape == (6, 2)
    for i, row in enumerate(mined):
        assert i not in row  # the query itself, the nearest item
        assert np.all(ids[row] != ids[i])

    # Separate queries and corpus: a same-id corpus item right on the query.
    corpus = unit([5, 20, 40, 90, 180])
    corpus_ids = np.array([7, 1, 2, 3, 4])
    queries = unit([5, 85])
    miner = kc.callbacks.HardNegativeMiner(
        queries, np.array([7, 3]), corpus, corpus_ids, num_hard_negatives=3
    )
    np.testing.assert_array_equal(miner.mine(identity_model()), [[1, 2, 3], [2, 1, 0]])


def test_mine_random_data_matches_brute_force():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(30, 5)).astype("float32")
    corpus = rng.normal(size=(40, 5)).astype("float32")
    query_ids = rng.integers(0, 5, size=30)
    corpus_ids = rng.integers(0, 5, size=40)
    h = 5
    miner = kc.callbacks.HardNegativeMiner(
        queries, query_ids, corpus, corpus_ids, num_hard_negatives=h, batch_size=7
    )
    mined = miner.mine(identity_model(5))
    assert mined.shape == (30, h)
    assert np.all(corpus_ids[mined] != query_ids[:, None])
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    sims = q.astype("float64") @ c.T.astype("float64")
    sims[corpus_ids[None, :] == query_ids[:, None]] = -np.inf
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :h]
    np.testing.assert_array_equal(mined, expected)


def test_refresh_every_two_mines_at_epochs_zero_and_two_only():
    x, labels = features()
    miner = kc.callbacks.HardNegativeMiner(
        x, labels, x, labels, num_hard_negatives=2, refresh_every=2
    )
    calls = count_mine(miner)
    recorder = MinedEpochs(miner)
    model = supervised()
    model.fit(supervised_data(miner, x, labels), epochs=4, verbose=0, callbacks=[miner, recorder])
    assert len(calls) == 2
    assert recorder.values == [0, 0, 2, 2]
    assert miner.mined_epoch == 2


# ------------------------------------------------------------------ dataset
def test_dataset_elements_carry_the_mined_corpus_items():
    x, labels = features()
    corpus = np.random.default_rng(5).normal(size=(10, 6)).astype("float32")
    corpus_ids = (np.arange(10) % 3).astype("int32")
    miner = kc.callbacks.HardNegativeMiner(x, labels, corpus, corpus_ids, num_hard_negatives=3)
    mined = miner.mine(supervised())
    miner.negatives.assign(mined)

    pairs = miner.with_hard_negatives(tf.data.Dataset.from_tensor_slices((x, labels)))
    for i, (element, label) in enumerate(pairs):
        assert set(element) == {"inputs", "hard_negatives"}
        np.testing.assert_array_equal(element["inputs"], x[i])
        np.testing.assert_array_equal(element["hard_negatives"], corpus[mined[i]])
        assert int(label) == labels[i]

    dicts = miner.with_hard_negatives(
        tf.data.Dataset.from_tensor_slices({"image": x, "extra": labels})
    )
    for i, element in enumerate(dicts):
        assert set(element) == {"image", "extra", "hard_negatives"}
        np.testing.assert_array_equal(element["image"], x[i])
        np.testing.assert_array_equal(element["hard_negatives"], corpus[mined[i]])

    # The variable is read as each element is made: a new assignment shows.
    miner.negatives.assign(np.zeros_like(mined))
    first = next(iter(pairs))[0]["hard_negatives"]
    np.testing.assert_array_equal(first, corpus[[0, 0, 0]])


def test_errors():
    x, labels = features()
    miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=2)
    with pytest.raises(ValueError, match="one element per query"):
        miner.with_hard_negatives(tf.data.Dataset.from_tensor_slices((x[:-1], labels[:-1])))
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        miner.with_hard_negatives(x)
    # 16 items, 3 classes: class 0 has 6 members, so 10 other-id items.
    kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=10)
    with pytest.raises(ValueError, match="num_hard_negatives"):
        kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=11)
    with pytest.raises(ValueError, match="query_ids"):
        kc.callbacks.HardNegativeMiner(x, labels[:, None], x, labels)
    with pytest.raises(ValueError, match="corpus_ids"):
        kc.callbacks.HardNegativeMiner(x, labels, x, labels[:-1])
    with pytest.raises(ValueError, match="query_ids"):
        kc.callbacks.HardNegativeMiner(x, labels.astype("float32"), x, labels)
    with pytest.raises(ValueError, match="corpus_ids"):
        kc.callbacks.HardNegativeMiner(x, labels, x, labels.astype("float64"))


# ------------------------------------------------------------------ training
def test_supervised_supcon_fit_with_mined_negatives():
    x, labels = features()
    miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=3)
    model = supervised()
    initial = model.get_weights()
    history = model.fit(supervised_data(miner, x, labels), epochs=2, verbose=0, callbacks=[miner])
    assert isinstance(model.method, kc.methods.Supervised)
    assert np.all(np.isfinite(history.history["loss"]))
    assert weights_changed(model, initial)
    assert miner.mined_epoch == 1
    assert np.all(labels[miner.negatives.numpy()] != labels[:, None])


def test_dual_clip_fit_with_mined_caption_negatives():
    images, texts, ids = dual_data()
    miner = dual_miner(images, ids, num_hard_negatives=2)
    model = clip_model(head(), head())
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses.CLIPLoss(use_group_ids=True))
    initial = model.get_weights()
    data = dual_dataset(miner, images, texts, ids)
    history = model.fit(data, epochs=2, verbose=0, callbacks=[miner])
    assert np.all(np.isfinite(history.history["loss"]))
    assert weights_changed(model, initial)
    mined = miner.negatives.numpy()
    assert mined.shape == (N, 2)
    assert np.all(mined != ids[:, None])  # caption j has id j: never the image's own

    batch = next(iter(data))
    assert batch[0]["hard_negatives"].shape == (8, 2)
    step = model.forward(batch, training=True)
    assert tuple(step.y_pred["hard_negatives"].shape) == (8, 2, 4)
    assert tuple(step.y_pred["embeddings"].shape) == (8, 2, 4)


def test_supcon_loss_scores_the_mined_negatives():
    x, labels = features()
    miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=3)
    model = supervised()
    model.fit(supervised_data(miner, x, labels), epochs=1, verbose=0, callbacks=[miner])
    batch = next(iter(supervised_data(miner, x, labels)))
    step = model.forward(batch, training=True)
    y_pred = step.y_pred
    assert set(y_pred) == {"embeddings", "hard_negatives"}
    assert tuple(y_pred["embeddings"].shape) == (8, 1, 4)
    assert tuple(y_pred["hard_negatives"].shape) == (8, 3, 4)
    # The negatives are the head's embeddings of the mined corpus items.
    negatives = batch[0]["hard_negatives"].numpy().reshape(-1, 6)
    own = model.projection_head(model.encoder(negatives, training=True), training=True)
    np.testing.assert_allclose(y_pred["hard_negatives"], np.reshape(own, (8, 3, 4)), atol=1e-5)
    with_negatives = float(model.loss(step.y_true, y_pred))
    without = float(model.loss(step.y_true, y_pred["embeddings"]))
    by_hand = float(
        np.mean(
            losses.supcon_loss(
                labels[:8],
                y_pred["embeddings"],
                temperature=0.2,
                hard_negatives=y_pred["hard_negatives"],
            )
        )
    )
    assert with_negatives > without
    np.testing.assert_allclose(with_negatives, by_hand, rtol=1e-5)


def test_losses_without_the_state_are_refused():
    x, labels = features()
    miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=2)
    model = supervised(loss=losses.TripletLoss(0.5))
    with pytest.raises(ValueError, match="hard_negatives"):
        model.fit(supervised_data(miner, x, labels), epochs=1, verbose=0, callbacks=[miner])

    images, texts, ids = dual_data()
    miner = dual_miner(images, ids)
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        CAPTIONS, vocabulary_size=50, sequence_length=6, tokenizer="whitespace"
    )
    siglip = kc.ContrastiveModel(
        image_encoder=mlp(),
        text_encoder=kc.encoders.text_transformer(
            preprocessor.vocabulary_size, 6, embed_dim=8, num_heads=1, num_layers=1
        ),
        image_head=head(),
        text_head=head(),
        text_preprocessor=preprocessor,
        logit_scale=kc.layers.SigmoidLogitScale(),
    )
    siglip.compile(optimizer="sgd", loss=losses.SigLIPLoss())
    with pytest.raises(ValueError, match="hard_negatives"):
        siglip.fit(dual_dataset(miner, images, texts, ids), epochs=1, verbose=0, callbacks=[miner])


def test_gradient_cache_with_mined_negatives_equals_the_plain_step():
    x, labels = features()
    results = []
    initial = None
    for chunks in (1, 2):
        miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=3)
        model = supervised(chunks=chunks)
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
        model.fit(
            supervised_data(miner, x, labels, batch=N), epochs=1, verbose=0, callbacks=[miner]
        )
        results.append((model, miner.negatives.numpy()))
    (plain, mined_plain), (cached, mined_cached) = results
    assert cached.gradient_cache.chunks == 2
    np.testing.assert_array_equal(mined_cached, mined_plain)
    assert weights_changed(plain, initial)
    assert_same_weights(cached.get_weights(), plain.get_weights())


def test_two_replicas_with_mined_negatives_equal_one_device():
    x, labels = features(8)
    single_miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=2)
    single = supervised()
    initial = single.get_weights()
    expected = single.fit(
        supervised_data(single_miner, x, labels), epochs=1, verbose=0, callbacks=[single_miner]
    ).history

    miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=2)
    with cpu_strategy(2).scope():
        mirrored = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5), loss=losses.SupConLoss(0.2))
    got = mirrored.fit(
        supervised_data(miner, x, labels), epochs=1, verbose=0, callbacks=[miner]
    ).history
    np.testing.assert_array_equal(miner.negatives.numpy(), single_miner.negatives.numpy())
    assert weights_changed(single, initial)
    assert_same_weights(mirrored.get_weights(), single.get_weights(), atol=2e-5)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)


@pytest.mark.parametrize("refresh_every", [1, 2])
def test_killed_and_resumed_fit_reads_the_saved_negatives(tmp_path, refresh_every):
    x, labels = features()
    miners, calls = [], []

    def fresh():
        return supervised(loss=losses.SupConLoss(0.2))

    def callbacks():
        name = "straight" if not miners else "mined"
        miner = kc.callbacks.HardNegativeMiner(
            x,
            labels,
            x,
            labels,
            num_hard_negatives=2,
            refresh_every=refresh_every,
            directory=tmp_path / name,
        )
        miners.append(miner)
        calls.append(count_mine(miner))
        return [miner]

    def dataset():  # no shuffle: deterministic
        return supervised_data(miners[-1], x, labels, batch=4)

    resumed, straight = resumed_and_straight(
        fresh, dataset, tmp_path / "backup", callbacks=callbacks
    )
    assert os.path.exists(tmp_path / "mined" / "hard_negatives.npz")
    assert len(miners) == 3
    assert len(calls[0]) == (2 if refresh_every == 1 else 1)  # straight
    assert len(calls[1]) == (2 if refresh_every == 1 else 1)  # killed in epoch 1
    assert calls[2] == []  # resumed in epoch 1: read back, not mined
    assert miners[2].mined_epoch == (1 if refresh_every == 1 else 0)
    np.testing.assert_array_equal(miners[2].negatives.numpy(), miners[0].negatives.numpy())
    with np.load(tmp_path / "mined" / "hard_negatives.npz") as saved:
        assert int(saved["epoch"]) == miners[2].mined_epoch
        np.testing.assert_array_equal(saved["negatives"], miners[0].negatives.numpy())


# ------------------------------------------------------------------ NT-Xent with group ids
def test_ntxent_with_group_ids_trains_through_supervised():
    rng = np.random.default_rng(0)
    v1 = rng.normal(size=(N, 6)).astype("float32")
    v2 = (v1 + rng.normal(scale=0.3, size=v1.shape)).astype("float32")
    labels = (np.arange(N) % 4).astype("int32")
    keras.utils.set_random_seed(0)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), loss=losses.NTXentLoss(0.2, use_group_ids=True)
    )
    initial = model.get_weights()
    data = tf.data.Dataset.from_tensor_slices(((v1, v2), labels)).batch(8)
    history = model.fit(data, epochs=1, verbose=0)
    assert isinstance(model.method, kc.methods.Supervised)
    assert np.all(np.isfinite(history.history["loss"]))
    assert weights_changed(model, initial)

    # With mined negatives of the first views.
    miner = kc.callbacks.HardNegativeMiner(v1, labels, v1, labels, num_hard_negatives=2)
    mined = miner.with_hard_negatives(tf.data.Dataset.from_tensor_slices(((v1, v2), labels))).batch(
        8
    )
    history = model.fit(mined, epochs=1, verbose=0, callbacks=[miner])
    assert np.all(np.isfinite(history.history["loss"]))

    single = tf.data.Dataset.from_tensor_slices((v1, labels)).batch(8)
    with pytest.raises(ValueError, match="two views"):
        model.fit(single, epochs=1, verbose=0)
