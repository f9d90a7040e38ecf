"""Debiased (τ⁺), hard-weighted (β) and decoupled negatives of NT-Xent, InfoNCE and CLIP.

The float64 NumPy reference below is written from the papers' formulas, one
anchor at a time (Chuang et al. 2020, Robinson et al. 2021, Yeh et al. 2021):
with `s` the cosine similarity, `pos = e^{s_p/τ}`, `neg_j = e^{s_j/τ}` over the
anchor's N negatives, `imp_j = e^{β s_j/τ}`,
`reweight = Σ_j imp_j neg_j / mean_j(imp_j)`,
`Ng = max((reweight − τ⁺ N pos) / (1 − τ⁺), N e^{−1/τ})` (`reweight` when τ⁺ = 0),
and the loss `−log(pos / (pos + Ng))`, or `−log(pos) + log(Ng)` when decoupled.
"""

import json
import math

import keras
import numpy as np
import pytest
import references
import tensorflow as tf
from conftest import replica_sum

import keras_contrastive as kc

OPTIONS = [  # (tau_plus, beta, decoupled)
    (0.1, 0.0, False),
    (0.0, 0.5, False),
    (0.0, 1.0, False),
    (0.1, 1.0, False),
    (0.0, 0.0, True),
    (0.1, 0.5, True),
]
LOSSES = ["ntxent", "info_nce", "clip"]
CLASSES = {
    "ntxent": kc.losses.NTXentLoss,
    "info_nce": kc.losses.InfoNCELoss,
    "clip": kc.losses.CLIPLoss,
}


reference = references.hard_negatives
numeric_gradient = references.numeric_gradient


# ------------------------------------------------------------------ library
def library(name, x, tau, options=(0.0, 0.0, False), chunk_size=None, queue=None, ids=None):
    """The pure function's per-row losses."""
    tau_plus, beta, decoupled = options
    kwargs = dict(chunk_size=chunk_size, tau_plus=tau_plus, beta=beta, decoupled=decoupled)
    if name == "ntxent":
        return kc.losses.ntxent_loss(None, x, tau, **kwargs)
    if name == "info_nce":
        return kc.losses.info_nce_loss(None, x, tau, negative_keys=queue, **kwargs)
    return kc.losses.clip_loss(ids, x, tau, **kwargs)


def value_and_gradient(fn, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_mean(fn(x))
    return value.numpy(), tape.gradient(value, x).numpy()


def pairs(rng, batch=5, dim=4, dtype="float32"):
    return rng.normal(size=(batch, 2, dim)).astype(dtype)


# ------------------------------------------------------------------ 1. values
@pytest.mark.parametrize("tau", [0.5, 0.1])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_values_match_the_reference_dense_and_chunked(rng, name, options, tau):
    x = pairs(rng)
    want = reference(name, x, tau, options)
    dense = library(name, x, tau, options)
    chunked = library(name, x, tau, options, chunk_size=3)
    assert dense.shape == want.shape and dense.dtype == "float32"
    np.testing.assert_allclose(dense, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked, dense, rtol=1e-6, atol=1e-6)
    tau_plus, beta, decoupled = options
    loss = CLASSES[name](temperature=tau, tau_plus=tau_plus, beta=beta, decoupled=decoupled)
    np.testing.assert_allclose(loss(None, x), want.mean(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ 2. defaults
@pytest.mark.parametrize("name", LOSSES)
def test_defaults_are_exactly_the_plain_loss(rng, name):
    x = pairs(rng, batch=6)
    cls = CLASSES[name]
    default = cls()(None, x)
    explicit = cls(tau_plus=0.0, beta=0.0, decoupled=False)(None, x)
    np.testing.assert_array_equal(default.numpy(), explicit.numpy())  # bit for bit
    tau = cls().temperature
    plain = library(name, x, tau)
    np.testing.assert_array_equal(plain.numpy(), library(name, x, tau, (0.0, 0.0, False)).numpy())
    softmax = {"ntxent": references.ntxent, "info_nce": references.info_nce}.get(
        name, references.clip
    )(np.asarray(x, np.float64), tau)
    np.testing.assert_allclose(plain, softmax, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(softmax, reference(name, x, tau, (0.0, 0.0, False)), rtol=1e-12)


# ------------------------------------------------------------------ 3. gradients
GRADIENT_CASES = [
    ("ntxent", (0.1, 0.0, False)),
    ("ntxent", (0.0, 1.0, False)),
    ("ntxent", (0.1, 0.5, True)),
    ("info_nce", (0.1, 1.0, False)),
    ("info_nce", (0.0, 0.5, True)),
    ("clip", (0.1, 0.5, False)),
    ("clip", (0.0, 1.0, True)),
]


@pytest.mark.parametrize("chunk_size", [None, 3], ids=["dense", "chunked"])
@pytest.mark.parametrize("name,options", GRADIENT_CASES, ids=str)
def test_gradients_match_finite_differences_of_the_reference(rng, name, options, chunk_size):
    x = pairs(rng, batch=4, dim=3, dtype="float64")
    tau = 0.5
    value, gradient = value_and_gradient(
        lambda v: library(name, v, tau, options, chunk_size=chunk_size), x
    )
    assert gradient.dtype == np.float64
    np.testing.assert_allclose(value, reference(name, x, tau, options).mean(), rtol=1e-10)
    want = numeric_gradient(lambda v: reference(name, v, tau, options).mean(), x)
    np.testing.assert_allclose(gradient, want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name,options", GRADIENT_CASES, ids=str)
def test_float32_gradients_match_finite_differences_of_the_reference(rng, name, options):
    x = pairs(rng, batch=4, dim=3, dtype="float64")
    want = numeric_gradient(lambda v: reference(name, v, 0.5, options).mean(), x)
    for chunk_size in (None, 3):
        _, gradient = value_and_gradient(
            lambda v, c=chunk_size: library(name, v, 0.5, options, chunk_size=c),
            x.astype("float32"),
        )
        np.testing.assert_allclose(gradient, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_float64_inputs_compute_in_float64(rng, name, options):
    x = pairs(rng, batch=4, dim=3, dtype="float64")
    got = library(name, x, 0.1, options)
    assert got.dtype == "float64"
    np.testing.assert_allclose(got, reference(name, x, 0.1, options), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", [(0.1, 1.0, False), (0.0, 0.5, True)], ids=str)
def test_gradients_with_a_queue_and_with_group_ids(rng, options):
    x = pairs(rng, batch=4, dim=3, dtype="float64")
    queue = rng.normal(size=(3, 3))
    tau = 0.5
    _, gradient = value_and_gradient(
        lambda v: library("info_nce", v, tau, options, chunk_size=3, queue=queue), x
    )
    want = numeric_gradient(lambda v: reference("info_nce", v, tau, options, queue=queue).mean(), x)
    np.testing.assert_allclose(gradient, want, rtol=1e-5, atol=1e-8)
    ids = np.array([0, 0, 1, 2], "int32")
    for chunk_size in (None, 3):
        _, gradient = value_and_gradient(
            lambda v, c=chunk_size: library("clip", v, tau, options, chunk_size=c, ids=ids), x
        )
        want = numeric_gradient(lambda v: reference("clip", v, tau, options, ids=ids).mean(), x)
        np.testing.assert_allclose(gradient, want, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ 4. InfoNCE queue
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_info_nce_queue_rows_are_negatives(rng, options):
    x, queue = pairs(rng), rng.normal(size=(4, 4)).astype("float32")
    tau = 0.2
    want = reference("info_nce", x, tau, options, queue=queue)
    assert not np.allclose(want, reference("info_nce", x, tau, options))  # the queue matters
    for chunk_size in (None, 3):
        got = library("info_nce", x, tau, options, chunk_size=chunk_size, queue=queue)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    tau_plus, beta, decoupled = options
    kwargs = dict(temperature=tau, tau_plus=tau_plus, beta=beta, decoupled=decoupled)
    loss = kc.losses.InfoNCELoss(**kwargs)
    state = loss(None, {"embeddings": x, "negative_keys": queue})
    np.testing.assert_allclose(state, want.mean(), rtol=1e-5, atol=1e-5)
    assert loss.negative_keys is None  # the state is for that call only
    configured = kc.losses.InfoNCELoss(negative_keys=queue, **kwargs)
    np.testing.assert_allclose(configured(None, x), want.mean(), rtol=1e-5, atol=1e-5)


def test_info_nce_queue_enters_n_of_the_debiasing():
    # One query, far from its key, and everything at right angles: s_p = 0 and every s_j = 0.
    # N = B − 1 + M = 1 + 2 = 3: reweight = 3, Ng = (3 − 0.1·3·1) / 0.9 = 3.
    x = np.array([[[1, 0, 0, 0], [0, 1, 0, 0]], [[0, 0, 1, 0], [0, 0, 0, 1]]], "float32")
    queue = np.array([[1, 0, 0, 0], [0, 0, 1, 0]], "float32")
    got = library("info_nce", x, 1.0, (0.1, 1.0, False), queue=queue)
    want = reference("info_nce", x, 1.0, (0.1, 1.0, False), queue=queue)
    np.testing.assert_allclose(got, want, rtol=1e-6)


# ------------------------------------------------------------------ 5. CLIP group ids
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_clip_group_ids_match_the_multi_positive_reference(rng, options):
    x = pairs(rng, batch=6)
    ids = np.array([0, 0, 1, 2, 2, 3], "int32")
    tau = 0.2
    want = reference("clip", x, tau, options, ids=ids)
    assert not np.allclose(want, reference("clip", x, tau, options))
    for chunk_size in (None, 3):
        got = library("clip", x, tau, options, chunk_size=chunk_size, ids=ids)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    tau_plus, beta, decoupled = options
    loss = kc.losses.CLIPLoss(
        temperature=tau, use_group_ids=True, tau_plus=tau_plus, beta=beta, decoupled=decoupled
    )
    np.testing.assert_allclose(loss(ids, x), want.mean(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_clip_one_group_has_no_negatives_and_gives_zero(rng, options):
    x = pairs(rng, batch=4)
    ids = np.zeros(4, "int32")
    for chunk_size in (None, 2):
        value, gradient = value_and_gradient(
            lambda v, c=chunk_size: library("clip", v, 0.1, options, chunk_size=c, ids=ids), x
        )
        np.testing.assert_array_equal(
            library("clip", x, 0.1, options, chunk_size=chunk_size, ids=ids), np.zeros(4)
        )
        assert value == 0.0
        assert np.all(np.isfinite(gradient))
        np.testing.assert_allclose(gradient, 0.0, atol=1e-12)


# ------------------------------------------------------------------ 6. numerics
EXTREME = [(0.1, 1.0, False), (0.1, 1.0, True)]


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30], ids=["tiny", "unit", "huge"])
@pytest.mark.parametrize("options", EXTREME, ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_low_temperature_and_extreme_magnitudes_stay_finite(rng, name, options, scale):
    direction = pairs(rng, batch=4)
    x = (direction * np.float32(scale)).astype("float32")
    assert np.all(np.isfinite(x))
    tau = 0.05
    for chunk_size in (None, 3):
        value, gradient = value_and_gradient(
            lambda v, c=chunk_size: library(name, v, tau, options, chunk_size=c), x
        )
        assert np.isfinite(value) and np.all(np.isfinite(gradient))
        got = library(name, x, tau, options, chunk_size=chunk_size)
        np.testing.assert_allclose(
            got, reference(name, direction, tau, options), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("options", EXTREME, ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_debiasing_floor_is_reached_with_finite_gradients(name, options):
    # Each pair's views coincide and pairs are orthogonal: s_p = 1, s_j = 0, so
    # reweight − τ⁺ N pos < 0 and Ng is the floor N e^{−1/τ}.
    x = np.repeat(np.eye(4, dtype="float32")[:, None], 2, axis=1)
    tau = 0.05
    value, gradient = value_and_gradient(lambda v: library(name, v, tau, options), x)
    assert np.isfinite(value) and np.all(np.isfinite(gradient))
    want = reference(name, x, tau, options)
    np.testing.assert_allclose(library(name, x, tau, options), want, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_float16_inputs_compute_in_float32(rng, name):
    x = pairs(rng, batch=6)
    half = x.astype("float16")
    options = (0.1, 1.0, False)
    got = library(name, half, 0.1, options)
    assert got.dtype == "float32" and np.all(np.isfinite(got))
    np.testing.assert_allclose(
        got, library(name, half.astype("float32"), 0.1, options), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(got, library(name, x, 0.1, options), rtol=2e-2, atol=2e-2)
    _, gradient = value_and_gradient(lambda v: library(name, v, 0.1, options), half)
    assert np.all(np.isfinite(gradient.astype("float32")))


# ------------------------------------------------------------------ 7. replicas
@pytest.mark.parametrize("sizes", [(4, 4), (5, 3)], ids=["even", "uneven"])
@pytest.mark.parametrize("options", [(0.1, 0.5, False), (0.0, 1.0, True)], ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_replicas_sum_to_the_single_device_value_and_gradient(rng, name, options, sizes):
    x = pairs(rng, batch=8, dim=3)

    def fn(v):
        return library(name, v, 0.2, options)

    single, single_gradient = value_and_gradient(fn, x)
    total, gradient = replica_sum(fn, x, sizes)
    np.testing.assert_allclose(total, single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient, single_gradient, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(single, reference(name, x, 0.2, options).mean(), rtol=1e-5)


# ------------------------------------------------------------------ 8. validation
@pytest.mark.parametrize("name", LOSSES)
def test_bad_options_are_refused(rng, name):
    cls = CLASSES[name]
    for tau_plus in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`tau_plus`"):
            cls(tau_plus=tau_plus)
    with pytest.raises(TypeError, match="`tau_plus`"):
        cls(tau_plus="0.1")
    with pytest.raises(ValueError, match="`beta`"):
        cls(beta=-1)
    with pytest.raises(TypeError, match="`beta`"):
        cls(beta=None)
    with pytest.raises(TypeError, match="`decoupled`"):
        cls(decoupled="yes")
    with pytest.raises(TypeError, match="`decoupled`"):
        cls(decoupled=1)
    x = pairs(rng, batch=3)
    with pytest.raises(ValueError, match="`tau_plus`"):
        library(name, x, 0.1, (1.0, 0.0, False))
    with pytest.raises(ValueError, match="`beta`"):
        library(name, x, 0.1, (0.0, -1.0, False))
    with pytest.raises(TypeError, match="`decoupled`"):
        library(name, x, 0.1, (0.0, 0.0, "yes"))
    cls(tau_plus=0.999, beta=0, decoupled=np.bool_(True))  # the edges that are allowed


# ------------------------------------------------------------------ 9. config
@pytest.mark.parametrize("name", LOSSES)
def test_config_round_trip_keeps_the_options(rng, name):
    loss = CLASSES[name](temperature=0.3, tau_plus=0.2, beta=0.7, decoupled=True, chunk_size=2)
    config = loss.get_config()
    json.dumps(config)
    assert (config["tau_plus"], config["beta"], config["decoupled"]) == (0.2, 0.7, True)
    x = pairs(rng, batch=4)
    for again in (
        CLASSES[name].from_config(config),
        keras.losses.deserialize(keras.losses.serialize(loss)),
    ):
        assert isinstance(again, CLASSES[name])
        assert (again.tau_plus, again.beta, again.decoupled) == (0.2, 0.7, True)
        assert again.get_config() == config
        np.testing.assert_allclose(again(None, x), loss(None, x), rtol=1e-6)
    plain = CLASSES[name]().get_config()
    assert (plain["tau_plus"], plain["beta"], plain["decoupled"]) == (0.0, 0.0, False)


# ------------------------------------------------------------------ 10. the op
def test_hard_negative_nll_small_example():
    logits = np.array([[2.0, 1.0, 0.0]], "float32")
    positives = np.array([[True, False, False]])
    negatives = np.array([[False, True, True]])
    e = math.e

    def nll(**kwargs):
        return kc.ops.hard_negative_nll(logits, positives, negatives, **kwargs).numpy()

    np.testing.assert_allclose(nll(), [math.log(1 + (e + 1) / e**2)], rtol=1e-6)
    np.testing.assert_allclose(nll(), [0.4076], atol=1e-4)
    beta = math.log(1 + ((e**2 + 1) / ((e + 1) / 2)) / e**2)
    np.testing.assert_allclose(nll(beta=1.0), [beta], rtol=1e-6)
    ng = max((-0.1 * 2 * e**2 + e + 1) / 0.9, 2 * math.exp(-10))
    np.testing.assert_allclose(
        nll(tau_plus=0.1, min_logit=-10.0), [math.log(1 + ng / e**2)], rtol=1e-6
    )
    np.testing.assert_allclose(nll(decoupled=True), [-2 + math.log(e + 1)], rtol=1e-6)
    np.testing.assert_allclose(nll(decoupled=True), [-0.687], atol=1e-3)
    np.testing.assert_allclose(
        nll(tau_plus=0.1, min_logit=-10.0, decoupled=True), [-2 + math.log(ng)], rtol=1e-6
    )
    with pytest.raises(ValueError, match="min_logit"):
        nll(tau_plus=0.1)


def test_hard_negative_nll_floor_several_positives_and_empty_rows():
    logits = np.array([[5.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 0.5]], "float32")
    positives = np.array([[True, False, False, False], [True, True, False, False]])
    negatives = np.array([[False, True, True, False], [False, False, False, False]])
    got = kc.ops.hard_negative_nll(logits, positives, negatives, 0.1, 1.0, min_logit=-3.0)
    # Row 0: reweight = 2 < τ⁺ N e^5, so Ng = 2 e^{-3}; row 1 has no negatives: 0.
    want = [math.log(1 + 2 * math.exp(-3) / math.exp(5)), 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)  # float32: log(e^5 + ε) − 5
    multi = kc.ops.hard_negative_nll(
        np.array([[2.0, 1.0, 0.0, -1.0]], "float32"),
        np.array([[True, True, False, False]]),
        np.array([[False, False, True, True]]),
        beta=0.5,
    )
    reweight = (math.exp(0.0) + math.exp(-1.5)) / ((1 + math.exp(-0.5)) / 2)
    want = np.mean([math.log(1 + reweight / math.exp(p)) for p in (2.0, 1.0)])
    np.testing.assert_allclose(multi, [want], rtol=1e-6)


# ------------------------------------------------------------------ 11. model.fit
def test_model_fit_and_keras_save_keep_the_options(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    v1 = x + rng.normal(scale=0.1, size=x.shape).astype("float32")
    v2 = x + rng.normal(scale=0.1, size=x.shape).astype("float32")
    inputs = keras.Input((6,))
    encoder = keras.Model(inputs, keras.layers.Dense(8, activation="tanh")(inputs))
    model = kc.ContrastiveModel(encoder=encoder)
    model.compile(
        optimizer=keras.optimizers.Adam(0.02), loss=kc.losses.NTXentLoss(beta=1.0, tau_plus=0.1)
    )
    dataset = tf.data.Dataset.from_tensor_slices(((v1, v2),)).batch(8)
    history = model.fit(dataset, epochs=2, verbose=0, shuffle=False)
    values = history.history["loss"]
    assert len(values) == 2 and np.all(np.isfinite(values))
    assert values[-1] != values[0]
    model.save(tmp_path / "hard.keras")
    restored = keras.models.load_model(tmp_path / "hard.keras")
    assert isinstance(restored.loss, kc.losses.NTXentLoss)
    assert (restored.loss.beta, restored.loss.tau_plus, restored.loss.decoupled) == (
        1.0,
        0.1,
        False,
    )
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(restored.embed(v1[:4]), model.embed(v1[:4]), atol=1e-6)
