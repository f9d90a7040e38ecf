"""ContrastiveModel under MirroredStrategy on logical CPUs equals one device."""

import ast
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import head, mlp

import keras_contrastive as kc
from keras_contrastive import losses

GLOBAL_BATCH = 8


CAPTIONS = np.array(["a red square", "a blue circle", "a green line", "a small dot"] * 2)


def text_tower():
    """Raw strings, tokenized in the step, into a small transformer."""
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        CAPTIONS, vocabulary_size=30, sequence_length=4, tokenizer="whitespace"
    )
    encoder = kc.encoders.text_transformer(
        preprocessor.vocabulary_size, 4, embed_dim=8, num_heads=1, num_layers=1, output_dim=8
    )
    return {"text_encoder": encoder, "text_preprocessor": preprocessor}


def make(kind):
    if kind in ("clip", "clip_strings", "siglip_strings"):
        text = {"text_encoder": mlp(5)} if kind == "clip" else text_tower()
        scale = kc.layers.SigmoidLogitScale() if kind == "siglip_strings" else "learnable"
        return kc.ContrastiveModel(
            image_encoder=mlp(),
            image_head=head(),
            text_head=head(),
            logit_scale=scale,
            **text,
        )
    return kc.ContrastiveModel(encoder=mlp(), projection_head=head())


LOSSES = {
    "ntxent": losses.NTXentLoss(0.2),
    "supcon": losses.SupConLoss(0.2),
    "clip": losses.CLIPLoss(),
    "clip_strings": losses.CLIPLoss(),
    "siglip_strings": losses.SigLIPLoss(),
}


def dataset(kind):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(GLOBAL_BATCH, 6)).astype("float32")
    b = (a + rng.normal(scale=0.3, size=a.shape)).astype("float32")
    labels = np.array([0, 1, 0, 2, 1, 3, 3, 0], "int32")  # label 2 has no positive
    if kind == "clip":
        data = {"image": a, "text": b[:, :5]}
    elif kind.endswith("_strings"):
        data = {"image": a, "text": CAPTIONS}
    elif kind == "supcon":
        data = ((a, b), labels)
    else:
        data = ((a, b),)  # two views made in tf.data: one input `x`
    return tf.data.Dataset.from_tensor_slices(data).batch(GLOBAL_BATCH)


@pytest.mark.parametrize("num_replicas", [2, 4])
@pytest.mark.parametrize("kind", ["ntxent", "supcon", "clip", "clip_strings", "siglip_strings"])
def test_one_step_matches_single_device(kind, num_replicas):
    single = make(kind)
    initial = single.get_weights()
    single.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSSES[kind])
    expected = single.fit(dataset(kind), epochs=1, verbose=0).history

    with cpu_strategy(num_replicas).scope():
        mirrored = make(kind)
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSSES[kind])
    got = mirrored.fit(dataset(kind), epochs=1, verbose=0).history

    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    assert any(
        np.abs(w - w0).max() > 1e-3 for w, w0 in zip(single.get_weights(), initial, strict=True)
    )
    for w_mirrored, w_single in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(w_mirrored, w_single, atol=1e-5)


# Every loss the model trains with, on the data of its mode: (loss, batch layout).
FIT_LOSSES = {
    "ntxent": (lambda: losses.NTXentLoss(0.2), "views"),
    "info_nce": (lambda: losses.InfoNCELoss(0.2), "views"),
    "supcon": (lambda: losses.SupConLoss(0.2), "labelled_views"),
    "triplet_batch_all": (lambda: losses.TripletLoss(0.5, "batch_all"), "labelled"),
    "triplet_batch_hard": (lambda: losses.TripletLoss(0.5, "batch_hard"), "labelled"),
    "triplet_semi_hard": (lambda: losses.TripletLoss(0.5, "semi_hard"), "labelled"),
    "margin": (lambda: losses.ContrastiveMarginLoss(), "pairs"),
    "clip": (lambda: losses.CLIPLoss(), "image_text"),
    "siglip": (lambda: losses.SigLIPLoss(), "image_text"),
}
# (replicas, global batch): even, and uneven with >= 2 examples on each replica
# (tf.data splits 7 as 4 + 3 and 11 as 3 + 3 + 3 + 2).
SPLITS = [(2, 8), (2, 7), (4, 11)]
STEPS = 2


def fit_model(name):
    layout = FIT_LOSSES[name][1]
    if layout == "image_text":
        scale = kc.layers.SigmoidLogitScale() if name == "siglip" else "learnable"
        return kc.ContrastiveModel(
            image_encoder=mlp(),
            text_encoder=mlp(5),
            image_head=head(),
            text_head=head(),
            logit_scale=scale,
        )
    return kc.ContrastiveModel(encoder=mlp(), projection_head=head())


def fit_dataset(name, batch):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(STEPS * batch, 6)).astype("float32")
    b = (a + rng.normal(scale=0.3, size=a.shape)).astype("float32")
    labels = (np.arange(STEPS * batch) % 3).astype("int32")
    data = {
        "views": ((a, b),),
        "labelled_views": ((a, b), labels),
        "labelled": (a, labels),
        "pairs": ((a, b[::-1]), (labels % 2).astype("float32")),
        "image_text": {"image": a, "text": b[:, :5]},
    }[FIT_LOSSES[name][1]]
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


@pytest.mark.parametrize("num_replicas,batch", SPLITS)
@pytest.mark.parametrize("name", sorted(FIT_LOSSES))
def test_fit_matches_single_device_for_even_and_uneven_splits(name, num_replicas, batch):
    single = fit_model(name)
    initial = single.get_weights()
    single.compile(optimizer=keras.optimizers.SGD(0.5), loss=FIT_LOSSES[name][0]())
    expected = single.fit(fit_dataset(name, batch), epochs=1, verbose=0).history
    expected_eval = single.evaluate(fit_dataset(name, batch), verbose=0, return_dict=True)

    with cpu_strategy(num_replicas).scope():
        mirrored = fit_model(name)
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(0.5), loss=FIT_LOSSES[name][0]())
    got = mirrored.fit(fit_dataset(name, batch), epochs=1, verbose=0).history
    got_eval = mirrored.evaluate(fit_dataset(name, batch), verbose=0, return_dict=True)

    assert any(
        np.abs(w - w0).max() > 1e-3 for w, w0 in zip(single.get_weights(), initial, strict=True)
    )
    for w_mirrored, w_single in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(w_mirrored, w_single, atol=2e-5)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got_eval["loss"], expected_eval["loss"], rtol=1e-5)


def test_in_step_augmentation_differs_across_replicas():
    strategy = cpu_strategy(2)
    with strategy.scope():
        model = kc.ContrastiveModel(
            encoder=kc.encoders.small_cnn(input_shape=(8, 8, 3), width=4),
            augmenter=kc.layers.SimCLRAugmentation(image_size=(8, 8), value_range=(0, 1)),
        )
        model.compile(optimizer="sgd")
    images = tf.constant(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)), "float32")

    def views(x):
        return model.make_views(x, seed=model.step_seed(training=True))

    per_replica = strategy.run(tf.function(views), args=(images,))
    first, second = strategy.experimental_local_results(per_replica)
    assert np.abs(np.asarray(first) - np.asarray(second)).max() > 1e-3
    again = strategy.experimental_local_results(strategy.run(tf.function(views), args=(images,)))
    np.testing.assert_array_equal(again[0], first)  # same step, same seed: replayable


# A step that fails on some replicas while others wait in a collective aborts the
# process's collective executor for good ("Restart your program to reset"): that
# test runs in a process of its own, so that the tests after it keep working.
REPLICA_BATCH_OF_ONE = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_contrastive as kc
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    inputs = keras.Input((6,))
    encoder = keras.Model(inputs, keras.layers.Dense(8)(inputs))
    model = kc.ContrastiveModel(encoder=encoder)
    model.compile(optimizer="sgd")
views = np.ones((2, 6), "float32")
try:
    model.fit(tf.data.Dataset.from_tensor_slices(((views, views),)).batch(2), verbose=0)
except tf.errors.InvalidArgumentError as error:
    print("REFUSED:", error.message)
"""


def run_fresh(script):
    """Runs `script` in a fresh Python process (its own devices and strategies)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )


def test_replica_batches_of_one_are_refused():
    result = run_fresh(REPLICA_BATCH_OF_ONE)
    assert "REFUSED:" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    assert "at least 2 examples on each replica" in result.stdout
    assert "drop_remainder=True" in result.stdout


# Two strategies in one fresh process, as in a notebook or a sweep: each trains a
# model whose gathers differ in shape. With `ReplicaContext.all_gather` the second
# fit aborted ("Shape mismatch in the collective instance"): both strategies'
# collectives shared instance keys.
TWO_STRATEGIES = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_contrastive as kc

def tower(input_dim):
    inputs = keras.Input((input_dim,))
    return keras.Model(inputs, keras.layers.Dense(4)(inputs))

rng = np.random.default_rng(0)
x = rng.normal(size=(8, 6)).astype("float32")
labels = np.array([0, 1, 0, 1, 2, 2, 3, 3], "int32")
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    supcon = kc.ContrastiveModel(encoder=tower(6))
    supcon.compile(optimizer="sgd", loss=kc.losses.SupConLoss())
supcon.fit(tf.data.Dataset.from_tensor_slices((x, labels)).batch(8), verbose=0)
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    clip = kc.ContrastiveModel(image_encoder=tower(6), text_encoder=tower(5))
    clip.compile(optimizer="sgd", loss=kc.losses.CLIPLoss())
data = {"image": x[:6], "text": x[:6, :5]}
history = clip.fit(tf.data.Dataset.from_tensor_slices(data).batch(6), epochs=2, verbose=0)
print("LOSSES:", history.history["loss"])
"""


def test_two_models_under_two_fresh_strategies_in_one_process():
    result = run_fresh(TWO_STRATEGIES)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    losses = ast.literal_eval(result.stdout.split("LOSSES:")[1].strip())
    assert len(losses) == 2 and all(np.isfinite(losses))


# ContrastiveAccuracy of a global batch split unevenly (7 = 4 + 3 on 2 replicas).
# Before the redesign each replica scored its queries against its local candidates
# only, and the accuracy under a strategy was not the single-device one.
ACCURACY_BATCH = 7
ACCURACY_SPLIT = (0, 4, 7)  # tf.data's per-replica rows of a batch of 7
ACCURACY_QUERIES = {"ntxent": "all_views", "clip": "first_view"}


def accuracy_model(kind):
    if kind != "clip":
        return kc.ContrastiveModel(encoder=mlp(), projection_head=head())
    model = kc.ContrastiveModel(
        image_encoder=mlp(),
        text_encoder=mlp(),
        image_head=head(),
        text_head=head(),
        logit_scale="learnable",
    )
    # Twin towers, so that an image's nearest text is often its own (neither 0 nor 1).
    model.text_encoder.set_weights(model.image_encoder.get_weights())
    model.text_head.set_weights(model.image_head.get_weights())
    return model


def accuracy_arrays(batches):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(batches * ACCURACY_BATCH, 6)).astype("float32")
    b = (a + rng.normal(scale=0.7, size=a.shape)).astype("float32")  # hard positives
    return a, b


def accuracy_dataset(kind, batches):
    a, b = accuracy_arrays(batches)
    data = {"image": a, "text": b} if kind == "clip" else ((a, b),)
    return tf.data.Dataset.from_tensor_slices(data).batch(ACCURACY_BATCH)


def embeddings_of(model, kind, a, b):
    """`(B, 2, D)` embeddings of the step, as NumPy."""
    if kind == "clip":
        pair = (model.embed_image(a), model.embed_text(b))
    else:
        pair = tuple(model.projection_head(model.encoder(x)) for x in (a, b))
    return np.stack([np.asarray(z, "float64") for z in pair], axis=1)


def reference_hits(kind, z):
    """Top-1 hits of the queries of `z` (B, 2, D) against the candidates of `z`."""
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    if ACCURACY_QUERIES[kind] == "first_view":
        return np.argmax(z[:, 0] @ z[:, 1].T, axis=1) == np.arange(len(z))
    flat = z.reshape(-1, z.shape[-1])  # example-major: row 2i + v
    scores = flat @ flat.T
    np.fill_diagonal(scores, -np.inf)
    example = np.arange(len(flat)) // 2
    return example[np.argmax(scores, axis=1)] == example


def reference_accuracy(kind, model, batches, local=False):
    """The accuracy accumulated after each of `batches` global batches.

    `local`: each replica's queries against its own candidates only (the old bug).
    """
    a, b = accuracy_arrays(batches)
    hits, accumulated = [], []
    for i in range(batches):
        rows = slice(i * ACCURACY_BATCH, (i + 1) * ACCURACY_BATCH)
        z = embeddings_of(model, kind, a[rows], b[rows])
        parts = zip(ACCURACY_SPLIT[:-1], ACCURACY_SPLIT[1:], strict=True) if local else [(0, None)]
        hits.extend(np.concatenate([reference_hits(kind, z[start:stop]) for start, stop in parts]))
        accumulated.append(np.mean(hits))
    return np.array(accumulated)


class BatchAccuracy(keras.callbacks.Callback):
    """The `contrastive_accuracy` in the logs of every train and test batch."""

    def __init__(self):
        super().__init__()
        self.train, self.test = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.train.append(float(logs["contrastive_accuracy"]))

    def on_test_batch_end(self, batch, logs=None):
        self.test.append(float(logs["contrastive_accuracy"]))


@pytest.mark.parametrize("kind", ["ntxent", "clip"])
def test_contrastive_accuracy_is_the_global_batch_accuracy_for_an_uneven_split(kind):
    def compiled(model):
        metric = kc.metrics.ContrastiveAccuracy(queries=ACCURACY_QUERIES[kind])
        # A small step: the trained towers still tell most positives apart.
        model.compile(optimizer=keras.optimizers.SGD(0.02), loss=LOSSES[kind], metrics=[metric])
        return model

    def run(model):
        batches = BatchAccuracy()
        history = model.fit(accuracy_dataset(kind, 1), verbose=0, callbacks=[batches])
        evaluation = model.evaluate(
            accuracy_dataset(kind, 2), verbose=0, return_dict=True, callbacks=[batches]
        )
        return history.history, evaluation, batches

    single = accuracy_model(kind)
    initial = single.get_weights()
    want_fit = reference_accuracy(kind, single, batches=1)  # the step's forward: initial weights
    local_fit = reference_accuracy(kind, single, batches=1, local=True)
    expected, expected_eval, expected_batches = run(compiled(single))
    want_eval = reference_accuracy(kind, single, batches=2)
    local_eval = reference_accuracy(kind, single, batches=2, local=True)

    with cpu_strategy(2).scope():  # the metric's variables too, as Keras asks
        mirrored = accuracy_model(kind)
        mirrored.set_weights(initial)
        compiled(mirrored)
    got, got_eval, got_batches = run(mirrored)

    # The data tells the global accuracy from the accuracy over local candidates.
    assert np.all(np.abs(want_fit - local_fit) > 0.1)
    assert np.all(np.abs(want_eval - local_eval) > 0.1)
    for history, evaluation, batches in [
        (expected, expected_eval, expected_batches),
        (got, got_eval, got_batches),
    ]:
        # End of epoch (the metric variables) and every batch's logs (the step's results).
        np.testing.assert_allclose(history["contrastive_accuracy"], want_fit, rtol=1e-6)
        np.testing.assert_allclose(batches.train, want_fit, rtol=1e-6)
        np.testing.assert_allclose(evaluation["contrastive_accuracy"], want_eval[-1], rtol=1e-6)
        np.testing.assert_allclose(batches.test, want_eval, rtol=1e-6)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
