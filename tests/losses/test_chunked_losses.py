"""`chunk_size`: the chunked losses give the dense values and gradients, everywhere."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive import losses as L

LABELS = np.array([0, 1, 0, 1, 2, 2, 3], "int32")  # single view: anchor 6 has no positive
NEGATIVES = np.random.default_rng(7).normal(size=(4, 5)).astype("float32")

# name: (fn(labels, x, temperature, bias, chunk_size), y_pred shape, labels)
CASES = {
    "ntxent": (lambda y, x, t, b, c: L.ntxent_loss(None, x, t, c), (7, 2, 5), None),
    "info_nce": (
        lambda y, x, t, b, c: L.info_nce_loss(None, x, t, NEGATIVES, c),
        (7, 2, 5),
        None,
    ),
    "supcon": (lambda y, x, t, b, c: L.supcon_loss(y, x, t, 0.5, c), (7, 2, 5), LABELS),
    "supcon_single_view": (lambda y, x, t, b, c: L.supcon_loss(y, x, t, None, c), (7, 5), LABELS),
    "clip": (lambda y, x, t, b, c: L.clip_loss(None, x, t, c), (7, 2, 5), None),
    "clip_groups": (lambda y, x, t, b, c: L.clip_loss(y, x, t, c), (7, 2, 5), LABELS),
    "siglip": (lambda y, x, t, b, c: L.siglip_loss(None, x, t, b, c), (7, 2, 5), None),
    "siglip_groups": (lambda y, x, t, b, c: L.siglip_loss(y, x, t, b, c), (7, 2, 5), LABELS),
}
NAMES = sorted(CASES)


def _inputs(name):
    shape = CASES[name][1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    row_weights = rng.uniform(0.5, 2.0, size=(shape[0], 2)).astype("float32")
    return x, row_weights


def _weighted_sum(values, row_weights):
    """A sum with a different weight per value, so every row's gradient is checked."""
    weights = tf.reshape(row_weights, [-1])[: tf.size(values)]
    return tf.reduce_sum(values * tf.reshape(weights, tf.shape(values)))


def _step(name, chunk_size):
    """Per-example values and the gradients of a weighted sum of them."""
    fn, _, labels = CASES[name]

    def step(x, temperature, bias, row_weights):
        with tf.GradientTape() as tape:
            tape.watch([x, temperature, bias])
            values = fn(labels, x, temperature, bias, chunk_size)
            loss = _weighted_sum(values, row_weights)
        grads = tape.gradient(
            loss, [x, temperature, bias], unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return [values] + grads

    return step


def _run(name, chunk_size, mode="eager"):
    step = _step(name, chunk_size)
    if mode != "eager":
        step = tf.function(step, jit_compile=mode == "xla")
    x, row_weights = _inputs(name)
    return step(tf.constant(x), tf.constant(0.3), tf.constant(-2.0), tf.constant(row_weights))


@pytest.fixture(scope="module")
def dense():
    return {name: _run(name, None) for name in NAMES}


def _assert_same(got, expected):
    names = ["values", "d/dx", "d/dtemperature", "d/dbias"][: len(got)]
    for g, e, what in zip(got, expected, names, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 14, 64])
@pytest.mark.parametrize("name", NAMES)
def test_chunked_values_and_gradients_equal_dense(name, chunk_size, dense):
    # 7 pairs give 14 NT-Xent/SupCon anchors: 3 and 5 divide neither 7 nor 14.
    _assert_same(_run(name, chunk_size), dense[name])


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("name", NAMES)
def test_chunked_under_tf_function_and_xla_equal_dense(name, mode, dense):
    _assert_same(_run(name, 3, mode), dense[name])


@pytest.mark.parametrize("name", ["ntxent", "supcon_single_view", "clip_groups", "siglip"])
def test_batch_size_unknown_when_traced(name, dense):
    fn, shape, labels = CASES[name]
    labels = np.zeros(shape[0], "int32") if labels is None else labels
    x, row_weights = _inputs(name)

    @tf.function(
        input_signature=[tf.TensorSpec((None,) + shape[1:]), tf.TensorSpec((None,), "int32")]
    )
    def step(x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            values = fn(labels, x, 0.3, -2.0, 3)
            loss = _weighted_sum(values, row_weights)
        return values, tape.gradient(loss, x)

    values, grad = step(x, labels)
    _assert_same([values, grad], dense[name][:2])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_a_learned_temperature_variable(name, dense):
    fn, _, labels = CASES[name]
    x, _ = _inputs(name)
    temperature = tf.Variable(0.3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(fn(labels, x, temperature, -2.0, 4))
    np.testing.assert_allclose(loss, tf.reduce_mean(dense[name][0]), rtol=1e-5)
    assert np.isfinite(tape.gradient(loss, temperature))


CLASSES = {
    "ntxent": lambda c: L.NTXentLoss(0.3, chunk_size=c),
    "info_nce": lambda c: L.InfoNCELoss(0.3, NEGATIVES, chunk_size=c),
    "supcon": lambda c: L.SupConLoss(0.3, chunk_size=c),
    "clip_groups": lambda c: L.CLIPLoss(0.3, use_group_ids=True, chunk_size=c),
    "siglip": lambda c: L.SigLIPLoss(0.3, -2.0, chunk_size=c),
}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_config_keeps_chunk_size(name):
    loss = CLASSES[name](3)
    assert loss.get_config()["chunk_size"] == 3
    clone = type(loss).from_config(loss.get_config())
    assert clone.chunk_size == 3 and clone.get_config() == loss.get_config()
    x, _ = _inputs(name)
    labels = CASES[name][2]
    np.testing.assert_allclose(clone(labels, x), CLASSES[name](None)(labels, x), rtol=1e-5)


def _model(shape):
    inputs = keras.Input(shape[1:-1] + (4,))
    return keras.Model(inputs, keras.layers.Dense(shape[-1], kernel_initializer="ones")(inputs))


@pytest.mark.parametrize("run_eagerly", [False, True])
@pytest.mark.parametrize("name", ["ntxent", "supcon", "siglip"])
def test_chunked_fit_matches_dense_fit_and_survives_keras_saving(name, run_eagerly, tmp_path):
    _, shape, labels = CASES[name]
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape[:-1] + (4,)).astype("float32")
    y = np.zeros(shape[0], "int32") if labels is None else labels
    weights = {}
    for chunk_size in (None, 3):
        model = _model(shape)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=CLASSES[name](chunk_size),
            run_eagerly=run_eagerly,
        )
        model.fit(x, y, batch_size=shape[0], epochs=3, verbose=0)
        weights[chunk_size] = model.get_weights()
    for dense_w, chunked_w in zip(weights[None], weights[3], strict=True):
        np.testing.assert_allclose(chunked_w, dense_w, rtol=1e-5, atol=1e-6)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.loss.chunk_size == 3
    np.testing.assert_allclose(
        restored.evaluate(x, y, batch_size=shape[0], verbose=0),
        model.evaluate(x, y, batch_size=shape[0], verbose=0),
        rtol=1e-6,
    )


LOSS_TYPES = [L.NTXentLoss, L.InfoNCELoss, L.SupConLoss, L.CLIPLoss, L.SigLIPLoss]
FUNCTIONS = [L.ntxent_loss, L.info_nce_loss, L.supcon_loss, L.clip_loss, L.siglip_loss]


@pytest.mark.parametrize("chunk_size", [0, -4, 2.5, "8", True])
@pytest.mark.parametrize("cls", LOSS_TYPES, ids=lambda c: c.__name__)
def test_bad_chunk_size_is_refused_by_the_class(cls, chunk_size):
    with pytest.raises(ValueError, match=r"`chunk_size` must be .*Received: chunk_size="):
        cls(chunk_size=chunk_size)


@pytest.mark.parametrize("chunk_size", [0, 1.0])
@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_bad_chunk_size_is_refused_by_the_function(fn, chunk_size):
    x = np.ones((4, 2, 3), "float32")
    labels = np.array([0, 0, 1, 1], "int32")
    with pytest.raises(ValueError, match="chunk_size"):
        fn(labels, x, chunk_size=chunk_size)


# Eagerly, forward + gradient of every chunked loss under a `tf.GradientTape` (a custom
# training loop), 8192 similarity rows each: the dense (8192, 8192) float32 matrix is 256 MiB.
EAGER_MEMORY_CHILD = """
import json, resource
import numpy as np
import tensorflow as tf
from keras_contrastive import losses as L

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

CHUNKED = [  # (loss, pairs: the similarity matrix is 8192 rows square either way)
    (L.NTXentLoss(chunk_size=128), 4096),
    (L.SupConLoss(chunk_size=128), 4096),
    (L.InfoNCELoss(chunk_size=128), 8192),
    (L.CLIPLoss(chunk_size=128), 8192),
    (L.SigLIPLoss(chunk_size=128), 8192),
]

def step(loss, pairs):
    x = tf.random.stateless_normal((pairs, 2, 16), seed=(0, 0))
    labels = tf.range(pairs) % 10
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(labels, x)
    return float(value), float(tf.reduce_sum(tape.gradient(value, x)))

for loss, _ in CHUNKED:  # warm up: kernels, thread pools
    step(loss, 64)
base = peak()
values = [step(loss, pairs) for loss, pairs in CHUNKED]
print(json.dumps({"growth": peak() - base, "finite": bool(np.isfinite(values).all())}))
"""


def test_chunked_losses_bound_memory_eagerly_under_a_gradient_tape():
    done = subprocess.run(
        [sys.executable, "-c", EAGER_MEMORY_CHILD], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["finite"]
    dense_matrix = 8192**2 * 4
    assert result["growth"] < dense_matrix / 2, f"{result['growth'] / 2**20:.0f} MiB"
