"""Loss contracts, and the state a loss takes as named parts of a dict `y_pred`."""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import pytest
import references as ref
import tensorflow as tf

import keras_contrastive as kc
from keras_contrastive import losses as L

LABELS = np.array([0, 1, 0, 1, 2, 2])
NEGATIVES = np.random.default_rng(7).normal(size=(5, 3))


def contract(labels="ignored", y_pred="pair", state=()):
    return L.LossContract(labels=labels, y_pred=y_pred, state=state)


CONTRACTS = {
    "ntxent": (L.NTXentLoss, contract(state=("temperature", "hard_negatives"))),
    "ntxent_groups": (
        lambda: L.NTXentLoss(use_group_ids=True),
        contract("integer", "pair", ("temperature", "hard_negatives")),
    ),
    "info_nce": (
        L.InfoNCELoss,
        contract(state=("temperature", "negative_keys", "hard_negatives")),
    ),
    "info_nce_groups": (
        lambda: L.InfoNCELoss(use_group_ids=True),
        contract("integer", "pair", ("temperature", "negative_keys", "hard_negatives")),
    ),
    "supcon": (L.SupConLoss, contract("integer", "views", ("temperature", "hard_negatives"))),
    "triplet": (L.TripletLoss, contract("integer", "single")),
    "margin": (L.ContrastiveMarginLoss, contract("pairs", "pair")),
    "clip": (L.CLIPLoss, contract(state=("temperature", "hard_negatives"))),
    "clip_groups": (
        lambda: L.CLIPLoss(use_group_ids=True),
        contract("integer", "pair", ("temperature", "hard_negatives")),
    ),
    "siglip": (L.SigLIPLoss, contract(state=("temperature", "bias"))),
    "siglip_groups": (
        lambda: L.SigLIPLoss(use_group_ids=True),
        contract("integer", "pair", ("temperature", "bias")),
    ),
}


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_loss_declares_its_contract(name):
    make, expected = CONTRACTS[name]
    loss = make()
    assert loss.contract == expected
    assert L.contract_of(loss) == expected
    assert L.contract_of(type(loss).from_config(loss.get_config())) == expected


def test_contract_of_a_keras_metric_learning_loss():
    circle = keras.losses.Circle()
    assert L.contract_of(circle) == contract("integer", "single")
    # What that contract says Circle takes is what it takes.
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    assert np.isfinite(float(circle(LABELS, x)))


class _Undeclared(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return keras.ops.sum(y_pred, axis=-1)


class _Declared(_Undeclared):
    contract = L.LossContract(labels="ignored", y_pred="views", state=("temperature",))


class _DeclaredByProperty(_Undeclared):
    def __init__(self, supervised=False):
        super().__init__()
        self.supervised = supervised

    @property
    def contract(self):
        return L.LossContract(labels="integer" if self.supervised else "ignored")


class _WrongContract(_Undeclared):
    contract = {"labels": "integer"}


def test_contract_of_user_losses():
    assert L.contract_of(_Undeclared()) == contract("integer", "single")
    assert L.contract_of(_Declared()) == contract("ignored", "views", ("temperature",))
    assert L.contract_of(_DeclaredByProperty()).labels == "ignored"
    assert L.contract_of(_DeclaredByProperty(supervised=True)).labels == "integer"
    with pytest.raises(TypeError, match=r"_WrongContract.contract` must be a kc.losses"):
        L.contract_of(_WrongContract())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": "int"}, r"`labels` must be one of \['ignored', 'integer', 'pairs'\]"),
        ({"labels": None}, r"Received: labels=None"),
        ({"y_pred": "triplets"}, r"`y_pred` must be one of \['pair', 'single', 'views'\]"),
        (
            {"state": ("temperature", "margin")},
            r"\['bias', 'center', 'hard_negatives', 'negative_keys', "
            r"'teacher_temperature', 'temperature'\]",
        ),
        ({"state": "temperature"}, r"tuple of names.*Received: state='temperature'"),
        ({"state": ("bias", "bias")}, r"must not repeat a name"),
        ({"state": None}, r"Received: state=None"),
    ],
)
def test_contract_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.LossContract(**kwargs)


def test_contract_is_a_frozen_value():
    made = L.LossContract("integer", "views", ["temperature", "bias"])
    assert made.state == ("temperature", "bias")
    assert made == L.LossContract("integer", "views", ("temperature", "bias"))
    assert hash(made) == hash(L.LossContract("integer", "views", ("temperature", "bias")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.labels = "ignored"
    assert made.describe() == "labels='integer', y_pred (B, V, D), state ('temperature', 'bias')"
    assert L.LossContract().describe() == "labels='ignored', y_pred (B, 2, D), state ()"
    assert L.LossContract(y_pred="single").describe().endswith("y_pred (B, D), state ()")
    assert L.LossContract.from_config(made.get_config()) == made


@dataclasses.dataclass
class StateCase:
    name: str
    make: Callable  # (**configured state) -> Loss
    shape: tuple
    labels: object
    state: dict  # the state values, as constructor arguments
    reference: Callable  # (float64 x, **state) -> the scalar loss


def _supcon_reference(x, temperature):
    losses, valid = ref.supcon(LABELS, x, temperature)
    return losses[valid].mean()


STATE_CASES = [
    StateCase(
        "ntxent",
        lambda **s: L.NTXentLoss(**s),
        (6, 2, 3),
        None,
        {"temperature": 0.3},
        lambda x, temperature: ref.ntxent(x, temperature).mean(),
    ),
    StateCase(
        "info_nce",
        lambda **s: L.InfoNCELoss(**s),
        (6, 2, 3),
        None,
        {"temperature": 0.3, "negative_keys": NEGATIVES},
        lambda x, temperature, negative_keys: ref.info_nce(x, temperature, negative_keys).mean(),
    ),
    StateCase(
        "info_nce_replaces_configured_keys",
        lambda **s: L.InfoNCELoss(**{"negative_keys": -NEGATIVES, **s}),
        (6, 2, 3),
        None,
        {"temperature": 0.3, "negative_keys": NEGATIVES},
        lambda x, temperature, negative_keys: ref.info_nce(x, temperature, negative_keys).mean(),
    ),
    StateCase(
        "supcon",
        lambda **s: L.SupConLoss(**s),
        (6, 2, 3),
        LABELS,
        {"temperature": 0.3},
        _supcon_reference,
    ),
    StateCase(
        "clip",
        lambda **s: L.CLIPLoss(**s),
        (6, 2, 3),
        None,
        {"temperature": 0.3},
        lambda x, temperature: ref.clip(x, temperature).mean(),
    ),
    StateCase(
        "clip_groups",
        lambda **s: L.CLIPLoss(use_group_ids=True, **s),
        (6, 2, 3),
        LABELS,
        {"temperature": 0.3},
        lambda x, temperature: ref.clip(x, temperature, LABELS).mean(),
    ),
    StateCase(
        "clip_chunked",
        lambda **s: L.CLIPLoss(chunk_size=2, **s),
        (6, 2, 3),
        None,
        {"temperature": 0.3},
        lambda x, temperature: ref.clip(x, temperature).mean(),
    ),
    StateCase(
        "siglip",
        lambda **s: L.SigLIPLoss(**s),
        (6, 2, 3),
        None,
        {"temperature": 0.3, "bias": -2.0},
        lambda x, temperature, bias: ref.siglip(x, temperature, bias).mean(),
    ),
    StateCase(
        "siglip_groups",
        lambda **s: L.SigLIPLoss(use_group_ids=True, **s),
        (6, 2, 3),
        LABELS,
        {"temperature": 0.3, "bias": -2.0},
        lambda x, temperature, bias: ref.siglip(x, temperature, bias, LABELS).mean(),
    ),
]
STATE_IDS = [case.name for case in STATE_CASES]
SCALARS = ("temperature", "bias")


def _x(case, seed=0):
    return np.random.default_rng(seed).normal(size=case.shape).astype("float32")


def _as_input(state):
    """The state as a model passes it: variables for scalars, a tensor for the keys."""
    return {
        name: (tf.Variable if name in SCALARS else tf.constant)(value, dtype="float32")
        for name, value in state.items()
    }


def _attributes(loss, names):
    return {name: getattr(loss, name) for name in names}


def _value_and_gradients(loss, y, x, state=None):
    x = tf.constant(x)
    state = state or {}
    variables = [value for value in state.values() if isinstance(value, tf.Variable)]
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(y, {"embeddings": x, **state} if state else x)
    gradients = tape.gradient(value, [x, *variables])
    return float(value), gradients[0], gradients[1:]


@pytest.mark.parametrize("case", STATE_CASES, ids=STATE_IDS)
def test_state_input_equals_the_configured_loss(case):
    x = _x(case)
    configured = case.make(**case.state)
    loss = case.make()
    before = _attributes(loss, case.state)
    given = _as_input(case.state)
    value, dx, _ = _value_and_gradients(loss, case.labels, x, given)
    expected, expected_dx, _ = _value_and_gradients(configured, case.labels, x)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(value, case.reference(x.astype("float64"), **case.state), rtol=1e-4)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-6)
    after = _attributes(loss, case.state)
    for name, original in before.items():
        assert after[name] is original, name
        assert type(after[name]) is type(original), name
    assert not any(isinstance(value, tf.Variable) for value in vars(loss).values())


@pytest.mark.parametrize("case", STATE_CASES, ids=STATE_IDS)
def test_gradients_reach_a_variable_given_as_state(case):
    x = _x(case, seed=1)
    scalars = [name for name in case.state if name in SCALARS]
    _, _, gradients = _value_and_gradients(case.make(), case.labels, x, _as_input(case.state))
    # The same variables in the constructor, the way a loss took a learned temperature before.
    configured = _as_input(case.state)
    with tf.GradientTape() as tape:
        value = case.make(**configured)(case.labels, x)
    expected = tape.gradient(value, [configured[name] for name in scalars])
    x64, step = x.astype("float64"), 1e-5
    for name, gradient, configured_gradient in zip(scalars, gradients, expected, strict=True):
        assert gradient is not None, name
        np.testing.assert_allclose(gradient, configured_gradient, rtol=1e-4)
        up = case.reference(x64, **{**case.state, name: case.state[name] + step})
        down = case.reference(x64, **{**case.state, name: case.state[name] - step})
        np.testing.assert_allclose(gradient, (up - down) / (2 * step), rtol=1e-3)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("case", STATE_CASES, ids=STATE_IDS)
def test_state_input_in_tf_function(case, jit_compile):
    x = tf.constant(_x(case, seed=2))
    loss = case.make()
    given = _as_input(case.state)
    variables = [value for value in given.values() if isinstance(value, tf.Variable)]

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            value = loss(case.labels, {"embeddings": x, **given})
        return value, tape.gradient(value, variables)

    value, gradients = step(x)
    eager_value, _, eager_gradients = _value_and_gradients(loss, case.labels, x, given)
    np.testing.assert_allclose(float(value), eager_value, rtol=1e-5)
    expected = case.reference(_x(case, seed=2).astype("float64"), **case.state)
    np.testing.assert_allclose(float(value), expected, rtol=1e-4)
    for gradient, eager in zip(gradients, eager_gradients, strict=True):
        np.testing.assert_allclose(gradient, eager, rtol=1e-4)
    assert isinstance(loss.temperature, float)


@pytest.mark.parametrize("case", STATE_CASES, ids=STATE_IDS)
def test_config_is_unchanged_by_state_inputs(case):
    loss = case.make()
    config = loss.get_config()
    loss(case.labels, {"embeddings": _x(case), **_as_input(case.state)})
    assert loss.get_config() == config
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == config
    np.testing.assert_allclose(
        float(clone(case.labels, {"embeddings": _x(case), **_as_input(case.state)})),
        float(loss(case.labels, {"embeddings": _x(case), **_as_input(case.state)})),
        rtol=1e-6,
    )


def test_a_subclass_sees_its_own_temperature_during_the_call():
    seen = []

    class RecordingCLIPLoss(L.CLIPLoss):
        def call(self, y_true, y_pred):
            seen.append(type(self.temperature))
            return super().call(y_true, y_pred)

    loss = RecordingCLIPLoss(temperature=0.2)
    x = np.random.default_rng(3).normal(size=(6, 2, 3)).astype("float32")
    temperature = tf.Variable(0.5)
    value = loss(None, {"embeddings": x, "temperature": temperature})
    assert seen == [float]
    assert loss.temperature == 0.2
    np.testing.assert_allclose(float(value), ref.clip(x.astype("float64"), 0.5).mean(), rtol=1e-5)
    tf.function(lambda x: loss(None, {"embeddings": x, "temperature": temperature}))(x)
    assert seen == [float, float]


# Every loss: (make, y_pred shape, y_true).
ALL_LOSSES = {
    "ntxent": (L.NTXentLoss, (6, 2, 3), None),
    "info_nce": (L.InfoNCELoss, (6, 2, 3), None),
    "supcon": (L.SupConLoss, (6, 2, 3), LABELS),
    "supcon_one_view": (L.SupConLoss, (6, 3), LABELS),
    "triplet": (L.TripletLoss, (6, 3), LABELS),
    "triplet_explicit": (L.TripletLoss, (6, 3, 3), None),
    "margin": (L.ContrastiveMarginLoss, (6, 2, 3), LABELS % 2),
    "clip": (L.CLIPLoss, (6, 2, 3), None),
    "clip_groups": (lambda: L.CLIPLoss(use_group_ids=True), (6, 2, 3), LABELS),
    "siglip": (L.SigLIPLoss, (6, 2, 3), None),
}


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_a_dict_of_embeddings_alone_is_the_tensor(name):
    make, shape, labels = ALL_LOSSES[name]
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    weights = np.linspace(0.1, 1.0, 6).astype("float32")[:, None]
    loss = make()
    np.testing.assert_allclose(
        float(loss(labels, {"embeddings": x})), float(loss(labels, x)), rtol=1e-6
    )
    np.testing.assert_allclose(
        float(loss(labels, {"embeddings": x}, sample_weight=weights)),
        float(loss(labels, x, sample_weight=weights)),
        rtol=1e-6,
    )


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_a_key_outside_the_declared_state_raises(name):
    make, shape, labels = ALL_LOSSES[name]
    loss = make()
    x = np.random.default_rng(5).normal(size=shape).astype("float32")
    undeclared = next(key for key in ("negative_keys", "bias") if key not in loss.contract.state)
    accepted = str(("embeddings", *loss.contract.state)).replace("(", r"\(").replace(")", r"\)")
    for key, value in ((undeclared, np.ones((2, 3), "float32")), ("margin", 1.0)):
        with pytest.raises(ValueError, match=rf"accepted keys are {accepted}.*'{key}'"):
            loss(labels, {"embeddings": x, key: value})
    with pytest.raises(ValueError, match=rf"key 'embeddings'.*accepted keys are {accepted}"):
        loss(labels, {"pairs": x})


def test_state_values_are_checked():
    x = np.random.default_rng(6).normal(size=(6, 2, 3)).astype("float32")
    with pytest.raises(ValueError, match="`temperature` must be a finite number > 0"):
        L.CLIPLoss()(None, {"embeddings": x, "temperature": -1.0})
    with pytest.raises(ValueError, match=r"`y_pred\['temperature'\]` must be a scalar"):
        L.NTXentLoss()(None, {"embeddings": x, "temperature": np.full((6,), 0.1, "float32")})
    with pytest.raises(ValueError, match="`bias` must be a finite number"):
        L.SigLIPLoss()(None, {"embeddings": x, "bias": np.inf})
    with pytest.raises(ValueError, match=r"`negative_keys` must have shape \(M, D\)"):
        L.InfoNCELoss()(None, {"embeddings": x, "negative_keys": np.ones((4, 5), "float32")})


def test_integer_labels_and_masks_read_the_embeddings_of_a_dict():
    x = np.random.default_rng(8).normal(size=(6, 2, 3)).astype("float32")
    loss = L.SupConLoss(0.3)
    large = LABELS.astype("int64") + 2**40  # float32 would merge these ids
    np.testing.assert_allclose(
        float(L.SupConLoss()(large, {"embeddings": x, "temperature": tf.Variable(0.3)})),
        float(loss(LABELS, x)),
        rtol=1e-6,
    )
    with pytest.raises(TypeError, match="`y_true` must be integer class ids"):
        loss(LABELS.astype("float32"), {"embeddings": x})
    with pytest.raises(ValueError, match="needs labels"):
        loss(None, {"embeddings": x})
    # A Keras mask on the embeddings drops the masked pairs from the mean.
    mask = np.array([True, True, False, True, False, True])
    for group_ids, clip in ((None, L.CLIPLoss(0.3)), (LABELS, L.CLIPLoss(0.3, True))):
        masked = tf.constant(x)
        masked._keras_mask = tf.constant(mask)
        per_pair = L.clip_loss(group_ids, x, 0.3)
        expected = float(np.sum(np.where(mask, per_pair, 0.0)) / mask.sum())
        np.testing.assert_allclose(float(clip(group_ids, masked)), expected, rtol=1e-6)
        given = {"embeddings": masked, "temperature": tf.Variable(0.3)}
        np.testing.assert_allclose(
            float(L.CLIPLoss(use_group_ids=group_ids is not None)(group_ids, given)),
            expected,
            rtol=1e-6,
        )


def test_the_losses_are_exported():
    assert kc.losses.LossContract is L.LossContract
    assert kc.losses.contract_of is L.contract_of
