"""Per-example mined negatives (`hard_negatives`) and accidental hits (group ids).

The float64 NumPy reference is written from the formulas, one anchor at a time:
each anchor's positive(s) and negatives are listed explicitly and scored with
`references.hcl_anchor` (the τ⁺/β/decoupled formula), or, for
CLIP's default multi-positive target, `logsumexp(all) − mean(positive logits)`.
"""

import numpy as np
import pytest
import references
import tensorflow as tf
from conftest import replica_sum

import keras_contrastive as kc

OPTIONS = [(0.0, 0.0, False), (0.1, 0.0, False), (0.0, 1.0, False), (0.0, 0.0, True)]
DEFAULT = (0.0, 0.0, False)
CHUNKS = [None, 2]
TAU = 0.5


reference = references.hard_negatives
numeric_gradient = references.numeric_gradient


# ------------------------------------------------------------------ library
def library(name, x, tau, options=DEFAULT, chunk_size=None, hn=None, ids=None, queue=None):
    tau_plus, beta, decoupled = options
    kw = dict(chunk_size=chunk_size, hard_negatives=hn)
    opt = dict(tau_plus=tau_plus, beta=beta, decoupled=decoupled)
    if name == "ntxent":
        return kc.losses.ntxent_loss(ids, x, tau, **kw, **opt)
    if name == "info_nce":
        return kc.losses.info_nce_loss(ids, x, tau, negative_keys=queue, **kw, **opt)
    if name == "clip":
        return kc.losses.clip_loss(ids, x, tau, **kw, **opt)
    assert options == DEFAULT
    return kc.losses.supcon_loss(ids, x, tau, **kw)


def value_and_gradients(fn, x, hn):
    x, hn = tf.constant(x), tf.constant(hn)
    with tf.GradientTape() as tape:
        tape.watch([x, hn])
        value = tf.reduce_mean(fn(x, hn))
    gx, gh = tape.gradient(value, [x, hn])
    return value.numpy(), gx.numpy(), gh.numpy()


def data(rng, batch=4, views=2, dim=3, h=2, dtype="float64"):
    x = rng.normal(size=(batch, views, dim)).astype(dtype)
    hn = rng.normal(size=(batch, h, dim)).astype(dtype)
    return x, hn


# name, ids, queue-rows
CASES = [
    ("ntxent", None, 0),
    ("info_nce", None, 0),
    ("info_nce", None, 3),
    ("clip", None, 0),
    ("clip", "ids", 0),
]
IDS = np.array([0, 0, 1, 2, 1], "int32")


def case_args(rng, name, ids, queue, batch):
    kwargs = {}
    if ids:
        kwargs["ids"] = IDS[:batch]
    if queue:
        kwargs["queue"] = rng.normal(size=(queue, 3))
    return kwargs


# ------------------------------------------------------------------ 1. values
@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("name,ids,queue", CASES, ids=str)
def test_values_with_hard_negatives_match_the_reference(rng, name, ids, queue, options, chunk_size):
    x, hn = data(rng, batch=5)
    kwargs = case_args(rng, name, ids, queue, 5)
    want = reference(name, x, TAU, options, hn=hn, **kwargs)
    assert not np.allclose(want, reference(name, x, TAU, options, **kwargs))  # hn matter
    got = library(name, x, TAU, options, chunk_size, hn=hn, **kwargs)
    assert got.shape == want.shape and got.dtype == "float64"
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
def test_supcon_values_with_hard_negatives_match_the_reference(rng, chunk_size):
    x, hn = data(rng, batch=5)
    labels = IDS
    want = reference("supcon", x, TAU, hn=hn, ids=labels)
    assert not np.allclose(want, reference("supcon", x, TAU, ids=labels))
    got = library("supcon", x, TAU, chunk_size=chunk_size, hn=hn, ids=labels)
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name,ids,queue", CASES + [("supcon", "ids", 0)], ids=str)
def test_classes_take_hard_negatives_as_state(rng, name, ids, queue):
    x, hn = data(rng, batch=5)
    kwargs = case_args(rng, name, ids, queue, 5)
    want = reference(name, x, TAU, hn=hn, **kwargs).mean()
    if name == "ntxent":
        loss, y = kc.losses.NTXentLoss(temperature=TAU), None
    elif name == "info_nce":
        loss, y = kc.losses.InfoNCELoss(temperature=TAU, negative_keys=kwargs.get("queue")), None
    elif name == "clip":
        loss = kc.losses.CLIPLoss(temperature=TAU, use_group_ids=bool(ids))
        y = kwargs.get("ids")
    else:
        loss, y = kc.losses.SupConLoss(temperature=TAU), kwargs["ids"]
    got = loss(y, {"embeddings": x.astype("float32"), "hard_negatives": hn.astype("float32")})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ 2. gradients
GRADIENT_CASES = [
    ("ntxent", DEFAULT, None),
    ("ntxent", (0.1, 1.0, False), None),
    ("info_nce", DEFAULT, 3),
    ("info_nce", (0.0, 1.0, True), None),
    ("clip", DEFAULT, "ids"),
    ("clip", (0.1, 0.0, False), None),
    ("supcon", DEFAULT, "ids"),
]


@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("name,options,extra", GRADIENT_CASES, ids=str)
def test_gradients_match_finite_differences(rng, name, options, extra, chunk_size):
    x, hn = data(rng, batch=4)
    kwargs = {}
    if extra == "ids":
        kwargs["ids"] = IDS[:4]
    elif extra:
        kwargs["queue"] = rng.normal(size=(extra, 3))
    value, gx, gh = value_and_gradients(
        lambda v, h: library(name, v, TAU, options, chunk_size, hn=h, **kwargs), x, hn
    )
    np.testing.assert_allclose(
        value, reference(name, x, TAU, options, hn=hn, **kwargs).mean(), rtol=1e-9
    )
    want_x = numeric_gradient(lambda v: reference(name, v, TAU, options, hn=hn, **kwargs).mean(), x)
    want_h = numeric_gradient(lambda h: reference(name, x, TAU, options, hn=h, **kwargs).mean(), hn)
    np.testing.assert_allclose(gx, want_x, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gh, want_h, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ 3. degenerate
@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("name", ["ntxent", "info_nce", "clip", "supcon"])
def test_zero_hard_negatives_equal_none(rng, name, chunk_size):
    x, _ = data(rng, batch=4)
    empty = np.zeros((4, 0, 3))
    options = DEFAULT if name == "supcon" else (0.1, 1.0, False)
    ids = IDS[:4] if name == "supcon" else None
    for opts in {DEFAULT, options}:
        a = library(name, x, TAU, opts, chunk_size, hn=empty, ids=ids)
        b = library(name, x, TAU, opts, chunk_size, ids=ids)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("options", [DEFAULT, (0.1, 1.0, False)], ids=str)
@pytest.mark.parametrize("name", ["ntxent", "info_nce"])
def test_distinct_group_ids_equal_no_ids(rng, name, options, chunk_size):
    x, hn = data(rng, batch=4)
    ids = np.array([7, 3, 0, 5], "int32")
    for h in (None, hn):
        a = library(name, x, TAU, options, chunk_size, hn=h, ids=ids)
        b = library(name, x, TAU, options, chunk_size, hn=h)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ 4. accidental hits
HIT_IDS = np.array([0, 1, 0, 1, 2], "int32")


@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("with_hn", [False, True], ids=["plain", "hn"])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("name,queue", [("ntxent", 0), ("info_nce", 0), ("info_nce", 3)], ids=str)
def test_accidental_hits_match_the_reference(rng, name, queue, options, with_hn, chunk_size):
    x, hn = data(rng, batch=5)
    hn = hn if with_hn else None
    kwargs = {"queue": rng.normal(size=(queue, 3))} if queue else {}
    want = reference(name, x, TAU, options, hn=hn, ids=HIT_IDS, **kwargs)
    assert not np.allclose(want, reference(name, x, TAU, options, hn=hn, **kwargs))
    got = library(name, x, TAU, options, chunk_size, hn=hn, ids=HIT_IDS, **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("options", [DEFAULT, (0.1, 0.0, True)], ids=str)
@pytest.mark.parametrize("name", ["ntxent", "info_nce"])
def test_accidental_hits_gradients(rng, name, options, chunk_size):
    x, hn = data(rng, batch=4)
    ids = np.array([0, 1, 0, 1], "int32")
    _, gx, gh = value_and_gradients(
        lambda v, h: library(name, v, TAU, options, chunk_size, hn=h, ids=ids), x, hn
    )
    want_x = numeric_gradient(lambda v: reference(name, v, TAU, options, hn=hn, ids=ids).mean(), x)
    want_h = numeric_gradient(lambda h: reference(name, x, TAU, options, hn=h, ids=ids).mean(), hn)
    np.testing.assert_allclose(gx, want_x, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gh, want_h, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("chunk_size", CHUNKS, ids=["dense", "chunked"])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_ntxent_one_group_without_hard_negatives_is_zero(rng, options, chunk_size):
    x, hn = data(rng, batch=4)
    ids = np.zeros(4, "int32")
    got = library("ntxent", x, TAU, options, chunk_size, ids=ids)
    np.testing.assert_array_equal(got, np.zeros((4, 2)))
    _, gx, _ = value_and_gradients(
        lambda v, h: library("ntxent", v, TAU, options, chunk_size, ids=ids) + 0 * tf.reduce_sum(h),
        x,
        hn,
    )
    assert np.all(np.isfinite(gx))
    np.testing.assert_allclose(gx, 0.0, atol=1e-12)
    # with hard negatives those are the only negatives
    with_hn = library("ntxent", x, TAU, options, chunk_size, hn=hn, ids=ids)
    np.testing.assert_allclose(
        with_hn, reference("ntxent", x, TAU, options, hn=hn, ids=ids), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("name", ["ntxent", "info_nce"])
def test_classes_use_group_ids_only_when_asked(rng, name):
    x, hn = data(rng, batch=5)
    cls = kc.losses.NTXentLoss if name == "ntxent" else kc.losses.InfoNCELoss
    state = {"embeddings": x.astype("float32"), "hard_negatives": hn.astype("float32")}
    want = reference(name, x, TAU, hn=hn, ids=HIT_IDS).mean()
    got = cls(temperature=TAU, use_group_ids=True)(HIT_IDS, state)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    ignored = cls(temperature=TAU)(HIT_IDS, state)
    np.testing.assert_allclose(ignored, reference(name, x, TAU, hn=hn).mean(), rtol=1e-5)


# ------------------------------------------------------------------ 5. replicas
REPLICA_CASES = [(n, k) for n in ("ntxent", "info_nce") for k in ("hn", "ids", "both")]


@pytest.mark.parametrize("name,kind", REPLICA_CASES + [("clip", "hn"), ("supcon", "hn")], ids=str)
def test_replicas_sum_to_the_single_device_value_and_gradient(rng, name, kind):
    x, hn = data(rng, batch=5, dtype="float32")
    ids = IDS.astype("float32")
    # One (B, 2 + H + 1, D) tensor, so that replica_sum slices all three together.
    id_row = np.zeros((5, 1, 3), "float32")
    id_row[:, 0, 0] = ids
    packed = np.concatenate([x, hn, id_row], axis=1)
    options = DEFAULT if name == "supcon" else (0.1, 0.5, False)
    use_hn = kind in ("hn", "both")
    use_ids = kind in ("ids", "both") or name == "supcon"

    def fn(v):
        group = tf.cast(v[:, -1, 0], "int32") if use_ids else None
        return library(name, v[:, :2], 0.2, options, hn=v[:, 2:-1] if use_hn else None, ids=group)

    packed_tf = tf.constant(packed)
    with tf.GradientTape() as tape:
        tape.watch(packed_tf)
        single = tf.reduce_mean(fn(packed_tf))
    single_gradient = tape.gradient(single, packed_tf).numpy()
    total, gradient = replica_sum(fn, packed, (2, 3))
    np.testing.assert_allclose(total, single, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient, single_gradient, rtol=1e-4, atol=1e-6)
    want = reference(
        name, x, 0.2, options, hn=hn if use_hn else None, ids=IDS if use_ids else None
    ).mean()
    np.testing.assert_allclose(single, want, rtol=1e-5)


# ------------------------------------------------------------------ 6. float16
@pytest.mark.parametrize("name", ["ntxent", "info_nce", "clip", "supcon"])
def test_float16_inputs_give_float32_outputs(rng, name):
    x, hn = data(rng, batch=4, dtype="float16")
    ids = IDS[:4] if name in ("supcon", "ntxent") else None
    got = library(name, x, TAU, hn=hn, ids=ids)
    assert got.dtype == "float32" and np.all(np.isfinite(got))
    want = reference(name, x.astype("float64"), TAU, hn=hn.astype("float64"), ids=ids)
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------ 7. validation
@pytest.mark.parametrize("name", ["ntxent", "info_nce", "clip", "supcon"])
def test_bad_hard_negatives_are_refused(rng, name):
    x, hn = data(rng, batch=4)
    ids = IDS[:4] if name == "supcon" else None
    nan = hn.copy()
    nan[1, 0, 2] = np.nan
    for bad in (hn[:, 0], hn[..., :2], hn[:3], nan):
        with pytest.raises(ValueError, match="hard_negatives"):
            library(name, x, TAU, hn=bad, ids=ids)


def test_use_group_ids_must_be_a_bool():
    # The library's check_bool raises TypeError (as for `decoupled="yes"`).
    for cls in (kc.losses.NTXentLoss, kc.losses.InfoNCELoss):
        with pytest.raises((TypeError, ValueError), match="use_group_ids"):
            cls(use_group_ids="yes")


# ------------------------------------------------------------------ 8. config
@pytest.mark.parametrize("cls", [kc.losses.NTXentLoss, kc.losses.InfoNCELoss])
def test_config_round_trip_keeps_use_group_ids(cls):
    for flag in (True, False):
        loss = cls(temperature=0.3, use_group_ids=flag)
        config = loss.get_config()
        assert config["use_group_ids"] is flag
        again = cls.from_config(config)
        assert again.use_group_ids is flag and again.temperature == pytest.approx(0.3)
