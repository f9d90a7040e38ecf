"""Properties every loss shares: gradients, compilation, precision, saving, errors."""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import pytest
import references as ref
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_contrastive as kc
from keras_contrastive import losses as L

LABELS = np.array([0, 1, 0, 1, 2, 2])


@dataclasses.dataclass
class Case:
    name: str
    make: Callable  # () -> Loss
    fn: Callable  # (y_true, y_pred) -> per-example values (pure function)
    shape: tuple  # y_pred shape
    labels: object  # y_true passed to the loss
    reference: Callable  # float64 y_pred -> the scalar loss
    similarity: bool = False  # invariant to scaling an embedding


CASES = [
    Case(
        "ntxent",
        lambda: L.NTXentLoss(0.5),
        lambda y, x: L.ntxent_loss(y, x, 0.5),
        (6, 2, 3),
        None,
        lambda x: ref.ntxent(x, 0.5).mean(),
        True,
    ),
    Case(
        "info_nce",
        lambda: L.InfoNCELoss(0.5),
        lambda y, x: L.info_nce_loss(y, x, 0.5),
        (6, 2, 3),
        None,
        lambda x: ref.info_nce(x, 0.5).mean(),
        True,
    ),
    Case(
        "supcon",
        lambda: L.SupConLoss(0.5),
        lambda y, x: L.supcon_loss(y, x, 0.5),
        (6, 2, 3),
        LABELS,
        lambda x: (lambda v: v[0][v[1]].mean())(ref.supcon(LABELS, x, 0.5)),
        True,
    ),
    Case(
        "clip",
        lambda: L.CLIPLoss(0.5),
        lambda y, x: L.clip_loss(y, x, 0.5),
        (6, 2, 3),
        None,
        lambda x: ref.clip(x, 0.5).mean(),
        True,
    ),
    Case(
        "clip_groups",
        lambda: L.CLIPLoss(0.5, use_group_ids=True),
        lambda y, x: L.clip_loss(y, x, 0.5),
        (6, 2, 3),
        LABELS,
        lambda x: ref.clip(x, 0.5, LABELS).mean(),
        True,
    ),
    Case(
        "margin",
        lambda: L.ContrastiveMarginLoss(margin=2.0),
        lambda y, x: L.contrastive_margin_loss(y, x, 2.0),
        (6, 2, 3),
        LABELS % 2,
        lambda x: ref.contrastive_margin(LABELS % 2, x, 2.0, True, "euclidean").mean(),
    ),
    Case(
        "margin_cosine_linear",
        lambda: L.ContrastiveMarginLoss(0.5, squared=False, distance="cosine"),
        lambda y, x: L.contrastive_margin_loss(y, x, 0.5, False, "cosine"),
        (6, 2, 3),
        LABELS % 2,
        lambda x: ref.contrastive_margin(LABELS % 2, x, 0.5, False, "cosine").mean(),
        True,
    ),
    Case(
        "triplet_explicit",
        lambda: L.TripletLoss(margin=3.0),
        lambda y, x: L.triplet_loss(y, x, 3.0),
        (6, 3, 3),
        None,
        lambda x: ref.triplet_explicit(x, 3.0, "euclidean").mean(),
    ),
] + [
    Case(
        f"triplet_{mining}_{distance}",
        lambda m=mining, d=distance: L.TripletLoss(margin=3.0, mining=m, distance=d),
        lambda y, x, m=mining, d=distance: L.triplet_loss(y, x, 3.0, m, d),
        (6, 3),
        LABELS,
        lambda x, m=mining, d=distance: ref.triplet_mined(LABELS, x, 3.0, m, d),
        distance == "cosine",
    )
    for mining in ("batch_all", "batch_hard", "semi_hard")
    for distance in ("euclidean", "squared_euclidean", "cosine")
]
IDS = [case.name for case in CASES]


def inputs(case, seed=0):
    return np.random.default_rng(seed).normal(size=case.shape)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_matches_finite_differences_of_reference(case):
    x = inputs(case, seed=1)
    variable = tf.Variable(x, dtype="float64")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(case.fn(case.labels, variable))
    np.testing.assert_allclose(loss, case.reference(x), rtol=1e-9, atol=1e-9)
    numeric = np.zeros_like(x)
    eps = 1e-6
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        numeric[index] = (case.reference(x + step) - case.reference(x - step)) / (2 * eps)
    np.testing.assert_allclose(tape.gradient(loss, variable), numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eager_graph_and_xla_agree(case):
    loss = case.make()
    x = inputs(case).astype("float32")
    y = case.labels
    eager = loss(y, x)
    graph = tf.function(lambda x: loss(y, x))(x)
    xla = tf.function(lambda x: loss(y, x), jit_compile=True)(x)
    np.testing.assert_allclose(graph, eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_compute_in_float32(case, dtype):
    x = inputs(case).astype("float32")
    half = tf.cast(x, dtype)
    values = case.fn(case.labels, half)
    assert values.dtype == "float32"
    expected = case.fn(case.labels, tf.cast(half, "float32"))
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_permuting_the_batch_keeps_the_mean(case):
    x = inputs(case).astype("float32")
    perm = np.random.default_rng(3).permutation(x.shape[0])
    labels = None if case.labels is None else case.labels[perm]
    loss = case.make()
    np.testing.assert_allclose(loss(labels, x[perm]), loss(case.labels, x), rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.similarity], ids=lambda c: c.name)
def test_similarity_losses_ignore_embedding_scale(case):
    x = inputs(case).astype("float32")
    scale = np.random.default_rng(4).uniform(0.1, 10.0, size=x.shape[:-1] + (1,))
    loss = case.make()
    np.testing.assert_allclose(
        loss(case.labels, (x * scale).astype("float32")), loss(case.labels, x), rtol=1e-5
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_round_trip(case):
    loss = case.make()
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    x = inputs(case).astype("float32")
    np.testing.assert_allclose(clone(case.labels, x), loss(case.labels, x))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(revived) is type(loss) and revived.get_config() == loss.get_config()


def _model(case):
    inputs_ = keras.Input(case.shape[1:-1] + (4,))
    return keras.Model(inputs_, keras.layers.Dense(case.shape[-1])(inputs_))


def _dataset(case):
    x = np.random.default_rng(0).normal(size=case.shape[:-1] + (4,)).astype("float32")
    y = np.zeros(case.shape[0], "int32") if case.labels is None else case.labels
    return x, y


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compiles_fits_and_survives_keras_saving(case, tmp_path):
    model = _model(case)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=case.make())
    x, y = _dataset(case)
    history = model.fit(x, y, batch_size=case.shape[0], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=case.shape[0], verbose=0),
        model.evaluate(x, y, batch_size=case.shape[0], verbose=0),
        rtol=1e-6,
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mixed_precision_model_trains_without_nan(case):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model(case)
        model.compile(optimizer="sgd", loss=case.make())
        assert model.layers[-1].compute_dtype == "float16"
        x, y = _dataset(case)
        history = model.fit(x, y, batch_size=case.shape[0], epochs=2, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.all(np.isfinite(history.history["loss"]))


finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_finite_for_any_finite_input(case, data):
    base = data.draw(hnp.arrays("float32", case.shape, elements=finite_floats))
    kind = data.draw(st.sampled_from(["random", "duplicated", "collinear", "huge", "zero"]))
    if kind == "duplicated":
        base = np.broadcast_to(base[:1], base.shape).copy()
    elif kind == "collinear":
        base = base[:1] * (
            1 + np.arange(base.shape[0]).reshape((-1,) + (1,) * (base.ndim - 1)) * 1e-6
        )
    elif kind == "huge":
        base = np.sign(base) * 1e6 + base * 1e-3
    elif kind == "zero":
        base = np.zeros_like(base)
    variable = tf.Variable(base.astype("float32"))
    with tf.GradientTape() as tape:
        loss = case.make()(case.labels, variable)
    assert np.isfinite(float(loss)), kind
    assert np.all(np.isfinite(tape.gradient(loss, variable))), kind


ALL = [
    L.NTXentLoss,
    L.InfoNCELoss,
    L.SupConLoss,
    L.CLIPLoss,
    L.ContrastiveMarginLoss,
    L.TripletLoss,
]
TEMPERATURE = [L.NTXentLoss, L.InfoNCELoss, L.SupConLoss, L.CLIPLoss]
MARGIN = [L.ContrastiveMarginLoss, L.TripletLoss]


@pytest.mark.parametrize("cls", TEMPERATURE)
@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_temperature_must_be_positive(cls, temperature):
    with pytest.raises(ValueError, match="temperature"):
        cls(temperature=temperature)


def test_base_temperature_must_be_positive():
    with pytest.raises(ValueError, match="base_temperature"):
        L.SupConLoss(base_temperature=0.0)


@pytest.mark.parametrize("cls", MARGIN)
def test_margin_must_be_non_negative(cls):
    with pytest.raises(ValueError, match="margin"):
        cls(margin=-0.5)


@pytest.mark.parametrize(
    "kwargs,argument", [({"mining": "hardest"}, "mining"), ({"distance": "manhattan"}, "distance")]
)
def test_unknown_options_are_refused(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        L.TripletLoss(**kwargs)
    with pytest.raises(ValueError, match="distance"):
        L.ContrastiveMarginLoss(distance="manhattan")


@pytest.mark.parametrize("cls", ALL)
def test_unknown_reduction_is_refused(cls):
    with pytest.raises(ValueError, match="reduction"):
        cls(reduction="median")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_wrong_rank_is_refused(case):
    x = np.zeros((4,), "float32")
    labels = np.zeros(4, "int32") if case.labels is None else case.labels[:4]
    with pytest.raises(ValueError, match="y_pred"):
        case.make()(labels, x)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if not c.name.startswith(("margin", "triplet_explicit"))],
    ids=lambda c: c.name,
)
def test_batch_of_one_is_refused(case):  # pairs and triplets carry their negatives
    x = inputs(case)[:1].astype("float32")
    labels = None if case.labels is None else case.labels[:1]
    with pytest.raises(ValueError, match="at least 2"):
        case.make()(labels, x)


@pytest.mark.parametrize("case", [c for c in CASES if c.labels is not None], ids=lambda c: c.name)
def test_batch_mismatch_is_refused(case):
    x = inputs(case).astype("float32")
    with pytest.raises(ValueError, match="y_true"):
        case.make()(case.labels[:-1], x)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.name.startswith(("supcon", "triplet_b", "triplet_s"))],
    ids=lambda c: c.name,
)
def test_float_labels_are_refused(case):
    with pytest.raises(TypeError, match="y_true"):
        case.make()(case.labels.astype("float32"), inputs(case).astype("float32"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_non_finite_embeddings_are_refused(case):
    x = inputs(case).astype("float32")
    x[0, ...] = np.nan
    with pytest.raises(ValueError, match="finite"):
        case.make()(case.labels, x)
    graph = tf.function(lambda x: case.make()(case.labels, x))
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        graph(x)


def test_public_names_are_exported():
    for name in [
        "NTXentLoss",
        "ntxent_loss",
        "InfoNCELoss",
        "info_nce_loss",
        "SupConLoss",
        "supcon_loss",
        "CLIPLoss",
        "clip_loss",
        "ContrastiveMarginLoss",
        "contrastive_margin_loss",
        "TripletLoss",
        "triplet_loss",
    ]:
        assert hasattr(kc.losses, name)
