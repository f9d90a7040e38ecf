"""What losses do with the inputs users actually pass: large ids, short batches, mismatches."""

import keras
import numpy as np
import pytest
import references as ref
import tensorflow as tf
import towers

import keras_contrastive as kc
from keras_contrastive import losses as L

LABELS = np.array([0, 1, 0, 1, 2, 2, 3, 3])

# Losses whose `y_true` holds integer class or group ids, on (8, ...) embeddings.
ID_LOSSES = {
    "supcon": (lambda: L.SupConLoss(0.5), (8, 2, 3)),
    "supcon_one_view": (lambda: L.SupConLoss(0.5), (8, 3)),
    "triplet_batch_all": (lambda: L.TripletLoss(0.5), (8, 3)),
    "triplet_semi_hard": (lambda: L.TripletLoss(0.5, mining="semi_hard"), (8, 3)),
    "clip_groups": (lambda: L.CLIPLoss(0.5, use_group_ids=True), (8, 2, 3)),
    "siglip_groups": (lambda: L.SigLIPLoss(0.5, use_group_ids=True), (8, 2, 3)),
}
# Large ids that float32 rounds together (2**24 + 1 -> 2**24) or int32 wraps (k * 2**32 -> 0).
LARGE_IDS = {
    "2**24+k": lambda labels: labels.astype("int64") + 2**24,
    "2**40+k": lambda labels: labels.astype("int64") + 2**40,
    "k*2**32": lambda labels: labels.astype("int64") * 2**32,
}


@pytest.mark.parametrize("ids", LARGE_IDS.values(), ids=LARGE_IDS.keys())
@pytest.mark.parametrize("name", ID_LOSSES)
def test_large_integer_ids_are_not_merged(name, ids):
    make, shape = ID_LOSSES[name]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    loss = make()
    expected = float(loss(LABELS, x))
    large = ids(LABELS)
    np.testing.assert_allclose(float(loss(large, x)), expected, rtol=1e-6)
    graph = tf.function(lambda y, x: loss(y, x))
    np.testing.assert_allclose(float(graph(large, x)), expected, rtol=1e-6)
    np.testing.assert_allclose(float(graph(tf.constant(large), x)), expected, rtol=1e-6)


@pytest.mark.parametrize("ids", LARGE_IDS.values(), ids=LARGE_IDS.keys())
def test_large_ids_train_like_small_ids_in_fit(ids):
    features = np.random.default_rng(1).normal(size=(16, 6)).astype("float32")
    labels = np.arange(16) % 5

    def train(y):
        keras.utils.set_random_seed(0)
        model = kc.ContrastiveModel(encoder=towers.mlp(), projection_head=towers.head())
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L.SupConLoss(0.5))
        history = model.fit(features, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return history.history["loss"], model.get_weights()

    small_loss, small_weights = train(labels)
    large_loss, large_weights = train(ids(labels))
    np.testing.assert_allclose(large_loss, small_loss, rtol=1e-6)
    for large, small in zip(large_weights, small_weights, strict=True):
        np.testing.assert_allclose(large, small, rtol=1e-5, atol=1e-6)


def test_sample_weight_and_reduction_still_apply_with_integer_labels():
    x = np.random.default_rng(2).normal(size=(8, 3)).astype("float32")
    weights = np.linspace(0.0, 1.0, 8).astype("float32")
    per_anchor = L.supcon_loss(LABELS, x, 0.5)
    weighted = L.SupConLoss(0.5)(LABELS, x, sample_weight=weights)
    np.testing.assert_allclose(weighted, np.sum(per_anchor * weights) / 8, rtol=1e-6)
    summed = L.SupConLoss(0.5, reduction="sum")(LABELS, x)
    np.testing.assert_allclose(summed, np.sum(per_anchor), rtol=1e-6)
    none = L.SupConLoss(0.5, reduction=None)(LABELS, x)
    np.testing.assert_allclose(none, per_anchor, rtol=1e-6)


# Losses whose negatives are the other examples: (make, y_pred shape without batch, uses labels).
NEGATIVES_FROM_BATCH = {
    "ntxent": (lambda: L.NTXentLoss(), (2, 3), False),
    "info_nce": (lambda: L.InfoNCELoss(), (2, 3), False),
    "supcon": (lambda: L.SupConLoss(), (2, 3), True),
    "clip": (lambda: L.CLIPLoss(), (2, 3), False),
    "clip_groups": (lambda: L.CLIPLoss(use_group_ids=True), (2, 3), True),
    "siglip": (lambda: L.SigLIPLoss(), (2, 3), False),
    "triplet_batch_hard": (lambda: L.TripletLoss(mining="batch_hard"), (3,), True),
}


def _unknown_batch_function(loss, feature_shape, uses_labels):
    """The loss in a `tf.function` traced with a `None` batch, as `fit` traces it."""
    signature = [
        tf.TensorSpec((None,), "int32"),
        tf.TensorSpec((None,) + feature_shape, "float32"),
    ]
    return tf.function(lambda y, x: loss(y if uses_labels else None, x), input_signature=signature)


@pytest.mark.parametrize("name", NEGATIVES_FROM_BATCH)
def test_batch_of_one_is_refused_naming_drop_remainder(name):
    make, feature_shape, uses_labels = NEGATIVES_FROM_BATCH[name]
    x = np.ones((1,) + feature_shape, "float32")
    y = np.zeros(1, "int32")
    with pytest.raises(ValueError, match="drop_remainder=True"):
        make()(y if uses_labels else None, x)
    graph = _unknown_batch_function(make(), feature_shape, uses_labels)
    with pytest.raises(tf.errors.InvalidArgumentError, match="drop_remainder=True"):
        graph(y, x)
    x2 = np.random.default_rng(0).normal(size=(2,) + feature_shape).astype("float32")
    np.testing.assert_allclose(graph(np.zeros(2, "int32"), x2), make()(np.zeros(2, "int32"), x2))


@pytest.mark.parametrize(
    "make", [L.ContrastiveMarginLoss, L.TripletLoss], ids=["margin", "triplet"]
)
def test_pair_and_triplet_losses_carry_their_negatives_in_a_batch_of_one(make):
    x = np.array([[[0.0, 0.0], [0.3, 0.4], [3.0, 4.0]]], "float32")  # d(a, p) = 0.5, d(a, n) = 5
    loss = make(margin=1.0)
    if make is L.ContrastiveMarginLoss:
        expected = (1.0 - 0.5) ** 2  # a dissimilar pair at distance 0.5
        args = (np.array([0]), x[:, :2])
    else:
        expected = 0.0  # max(0, 0.5 - 5 + 1)
        args = (None, x)
    np.testing.assert_allclose(loss(*args), expected, atol=1e-6)
    graph = tf.function(lambda y, x: loss(y, x), reduce_retracing=True)
    np.testing.assert_allclose(graph(*args), expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least 1 example"):
        loss(None if args[0] is None else args[0][:0], args[1][:0])


def test_fit_with_a_final_batch_of_one_is_refused_naming_drop_remainder():
    model = towers.simclr_model(towers.head())
    model.compile(optimizer="sgd", loss=L.NTXentLoss())
    images = np.random.default_rng(0).uniform(size=(9, 16, 16, 3)).astype("float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="drop_remainder=True"):
        model.fit(images, batch_size=4, epochs=1, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(4, drop_remainder=True)
    assert np.isfinite(model.fit(dataset, epochs=1, verbose=0).history["loss"][0])


# Losses with labels, for a labels-vs-embeddings batch mismatch: (make, y_pred feature shape).
WITH_LABELS = {
    "supcon": (lambda: L.SupConLoss(), (2, 3)),
    "triplet": (lambda: L.TripletLoss(), (3,)),
    "margin": (lambda: L.ContrastiveMarginLoss(), (2, 3)),
    "clip_groups": (lambda: L.CLIPLoss(use_group_ids=True), (2, 3)),
    "siglip_groups": (lambda: L.SigLIPLoss(use_group_ids=True), (2, 3)),
}


@pytest.mark.parametrize("name", WITH_LABELS)
def test_label_batch_mismatch_in_a_graph_is_a_clear_error(name):
    make, feature_shape = WITH_LABELS[name]
    graph = _unknown_batch_function(make(), feature_shape, True)
    x = np.random.default_rng(0).normal(size=(8,) + feature_shape).astype("float32")
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="`y_true` and `y_pred` must have the same batch"
    ):
        graph(np.zeros(7, "int32"), x)


def test_margin_flags_other_than_0_and_1_are_refused_in_a_graph():
    x = np.random.default_rng(0).normal(size=(4, 2, 3)).astype("float32")
    flags = np.array([0, 2, 1, 0], "int32")
    with pytest.raises(ValueError, match="1 for similar and 0 for dissimilar"):
        L.ContrastiveMarginLoss()(flags, x)
    graph = _unknown_batch_function(L.ContrastiveMarginLoss(), (2, 3), True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="1 for similar and 0 for dissimilar"):
        graph(flags, x)
    np.testing.assert_allclose(
        graph(flags % 2, x), L.ContrastiveMarginLoss()(flags % 2, x), rtol=1e-6
    )


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
def test_triplet_loss_on_an_empty_batch_is_a_clear_error(mining):
    loss = L.TripletLoss(mining=mining)
    with pytest.raises(ValueError, match="at least 2 examples"):
        loss(np.zeros(0, "int32"), np.zeros((0, 3), "float32"))
    graph = _unknown_batch_function(loss, (3,), True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 2 examples"):
        graph(np.zeros(0, "int32"), np.zeros((0, 3), "float32"))


def _as_float32(x):
    with np.errstate(over="ignore"):
        return np.float32(np.float64(x))


TINY = np.finfo(np.float32).tiny  # TensorFlow flushes float32 results below it to 0


MINED = [
    (mining, distance)
    for mining in ("batch_all", "batch_hard", "semi_hard")
    for distance in ("euclidean", "squared_euclidean")
]


@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e20])
@pytest.mark.parametrize("mining, distance", MINED)
def test_mined_triplet_loss_is_right_at_any_scale(scale, mining, distance):
    x = (np.random.default_rng(0).normal(size=(8, 3)) * scale).astype("float32")
    expected = _as_float32(ref.triplet_mined(LABELS, x.astype(np.float64), 1.0, mining, distance))
    loss = L.TripletLoss(margin=1.0, mining=mining, distance=distance)
    np.testing.assert_allclose(float(loss(LABELS, x)), expected, rtol=1e-4)
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = loss(LABELS, variable)
    if np.isfinite(expected):  # an overflowed loss (squared distances ~1e40) has no gradient
        assert np.all(np.isfinite(tape.gradient(value, variable)))


@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e20])
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean"])
def test_explicit_triplets_and_margin_pairs_are_right_at_any_scale(scale, distance):
    x = (np.random.default_rng(1).normal(size=(6, 3, 3)) * scale).astype("float32")
    x64 = x.astype(np.float64)
    expected = ref.triplet_explicit(x64, 1.0, distance)
    with np.errstate(over="ignore"):
        gap = ref.triplet_explicit(x64, 0.0, distance)  # computed from float64 distances
    expected = np.where(np.isfinite(_as_float32(gap)), expected, gap)
    np.testing.assert_allclose(
        L.TripletLoss(margin=1.0, distance=distance, reduction=None)(None, x),
        [_as_float32(e) for e in expected],
        rtol=1e-4,
        atol=TINY,
    )
    flags = np.array([1, 0, 1, 0, 1, 0])
    margin_expected = ref.contrastive_margin(flags, x64[:, :2], 1.0, True, "euclidean")
    np.testing.assert_allclose(
        L.ContrastiveMarginLoss(margin=1.0, reduction=None)(flags, x[:, :2]),
        [_as_float32(e) for e in margin_expected],
        rtol=1e-4,
        atol=TINY,
    )


def test_identical_pairs_have_zero_loss_at_1e30():
    u, w = np.full(3, 1e30, "float32"), np.array([-1e30, 2e30, 0.0], "float32")
    pairs = tf.Variable(np.stack([[u, u], [u, w], [w, w]]))
    flags = np.array([1, 0, 1])  # identical similar pairs, and a dissimilar pair far apart
    for loss in [L.ContrastiveMarginLoss(), L.ContrastiveMarginLoss(squared=False)]:
        with tf.GradientTape() as tape:
            value = loss(flags, pairs)
        assert float(value) == 0.0
        np.testing.assert_array_equal(tape.gradient(value, pairs), 0.0)
    triplets = tf.Variable(np.stack([[u, u, w], [w, w, u]]))  # d(a, p) = 0, d(a, n) huge
    for distance in ["euclidean", "squared_euclidean"]:
        with tf.GradientTape() as tape:
            value = L.TripletLoss(distance=distance)(None, triplets)
        assert float(value) == 0.0
        assert np.all(np.isfinite(tape.gradient(value, triplets)))
