"""DINO on the training core: teacher EMA, centering, sharpening, multi-crop, saving, replicas."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import cpu_strategy
from towers import (
    Record,
    assert_export_holds_the_encoder_only,
    head,
    mlp,
    numpy_weights,
    resumed_and_straight,
)

import keras_contrastive as kc
from keras_contrastive.losses.dino_loss import DINOLoss
from keras_contrastive.methods.dino import DINO

BATCH = 4
K = 8  # prototypes


def views(n=4 * BATCH, num_views=2, seed=0):
    """`n` examples as `num_views` noisy copies of 6-d features: two global, then local."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return tuple(
        (x + rng.normal(scale=0.3, size=x.shape)).astype("float32") for _ in range(num_views)
    )


def dataset(batch=BATCH, n=4 * BATCH, num_views=2):
    """Batches of `((global_1, global_2, local_1, ...),)`, in a fixed order."""
    return tf.data.Dataset.from_tensor_slices((views(n, num_views),)).batch(batch)


def make(method=None, lr=0.1, optimizer=None, **kwargs):
    """`mlp()` and a 4-d `head()` trained by DINO with `K` prototypes and its default loss."""
    method = method or DINO(num_prototypes=K)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=method, **kwargs)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(lr))
    return model


def student_logits(model, x, training=False):
    z = model.projection_head(model.encoder(x, training=training), training=training)
    return model.method.prototypes(z)


def teacher_logits(model, x):
    encoder, projection_head, prototypes = model.method.teacher.towers
    return prototypes(projection_head(encoder(x, training=False), training=False))


def normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cosine(base, k, total):
    """BYOL's and DINO's τ_k from the papers, held at 1 after K steps."""
    return 1 - (1 - base) * (math.cos(math.pi * min(k, total) / total) + 1) / 2


# ------------------------------------------------------------------ training
def test_training_decreases_the_loss_and_reports_the_collapse_monitor():
    model = make(optimizer=keras.optimizers.Adam(0.01))
    assert isinstance(model.loss, DINOLoss)
    history = model.fit(dataset(n=32), epochs=8, verbose=0, shuffle=False).history
    assert [m.name for m in model.metrics] == ["loss", "embedding_std"]
    assert history["loss"][-1] < history["loss"][0] - 0.05
    assert min(history["embedding_std"]) > 0.1  # 4-d unit projections: 0.5 when spread


def test_rows_are_the_teachers_then_the_students_logits_with_the_state():
    method = DINO(num_prototypes=K, total_steps=100, warmup_steps=10)
    model = make(method)
    model.optimizer.iterations.assign(4)
    x = views(BATCH, num_views=4)
    step = model.forward((x,), training=False)
    rows = step.y_pred["embeddings"]
    assert tuple(rows.shape) == (BATCH, 2 + 4, K) and step.y_true is None
    for g in range(2):
        np.testing.assert_allclose(rows[:, g], teacher_logits(model, x[g]), rtol=1e-6, atol=1e-6)
    for v in range(4):
        np.testing.assert_allclose(rows[:, 2 + v], student_logits(model, x[v]), atol=1e-6)
    z = [model.projection_head(model.encoder(x[g])) for g in range(2)]
    np.testing.assert_allclose(step.embeddings, np.stack(z, axis=1), atol=1e-6)  # metrics' input
    np.testing.assert_allclose(step.y_pred["teacher_temperature"], 0.04 + 0.03 * 4 / 10, rtol=1e-6)
    assert step.y_pred["center"] is model.method.center
    assert np.all(np.abs(rows) <= 1 + 1e-6)  # cosines with unit prototypes


def test_teacher_temperature_warms_up_linearly_then_stays():
    method = DINO(warmup_teacher_temperature=0.04, teacher_temperature=0.07, warmup_steps=10)
    got = [float(method.teacher_temperature_at(k)) for k in (0, 5, 10, 11, 1000)]
    np.testing.assert_allclose(got, [0.04, 0.055, 0.07, 0.07, 0.07], rtol=1e-6)
    assert DINO(total_steps=300).resolved_warmup_steps == 30  # DINO's 30 of 300 epochs
    assert DINO().resolved_warmup_steps == 0
    np.testing.assert_allclose(DINO().teacher_temperature_at(0), 0.07)


# ------------------------------------------------------------------ EMA and center
@pytest.mark.parametrize("total_steps", [3, None])
def test_teacher_and_center_follow_their_moving_averages_after_each_step(total_steps):
    method = DINO(num_prototypes=K, momentum=0.5, total_steps=total_steps, center_momentum=0.8)
    model = make(method, lr=0.5)
    sources = [model.encoder, model.projection_head, model.method.prototypes]
    teacher = model.method.teacher.towers
    assert [t.name for t in teacher] == ["key_" + s.name for s in sources]
    for got, want in zip(numpy_weights(teacher), numpy_weights(sources), strict=True):
        np.testing.assert_array_equal(got, want)  # a copy at the start
    n = 5 * BATCH
    batches = [tuple(v[i : i + BATCH] for v in views(n)) for i in range(0, n, BATCH)]
    counter = iter(range(5))

    def before(model):
        g1, g2 = batches[next(counter)]
        logits = np.concatenate([teacher_logits(model, g1), teacher_logits(model, g2)])
        return numpy_weights(teacher), logits.mean(axis=0), model.method.center.numpy()

    def after(model):
        return numpy_weights(sources), numpy_weights(teacher), model.method.center.numpy()

    first, then = Record(before, "begin"), Record(after)
    model.fit(dataset(n=n), epochs=1, verbose=0, shuffle=False, callbacks=[first, then])
    for k, ((teacher_before, mean, center_before), (online, teacher_after, center)) in enumerate(
        zip(first.values, then.values, strict=True)
    ):
        np.testing.assert_allclose(center, 0.8 * center_before + 0.2 * mean, rtol=1e-5, atol=1e-7)
        tau = 0.5 if total_steps is None else cosine(0.5, k, total_steps)
        for got, t, o in zip(teacher_after, teacher_before, online, strict=True):
            np.testing.assert_allclose(got, tau * t + (1 - tau) * o, rtol=1e-6, atol=1e-7)
    assert np.abs(then.values[-1][2]).max() > 1e-3  # the center moved


def test_evaluate_leaves_teacher_and_center_unchanged():
    model = make()
    model.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    center, teacher = model.method.center.numpy(), numpy_weights(model.method.teacher.towers)
    model.evaluate(dataset(), verbose=0)
    np.testing.assert_array_equal(model.method.center.numpy(), center)
    for got, want in zip(numpy_weights(model.method.teacher.towers), teacher, strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ gradients
def test_gradient_reaches_the_student_only():
    model = make()
    x = views(BATCH, num_views=3)
    frozen = [w.value for w in model.method.teacher.weights] + [model.method.center.value]
    weights = model.trainable_weights
    prototypes = {id(w) for w in model.method.prototypes.trainable_weights}
    assert prototypes and prototypes <= {id(w) for w in weights}
    assert not {id(w) for w in model.method.teacher.weights} & {id(w) for w in weights}
    with tf.GradientTape() as tape:
        tape.watch(frozen)
        loss = model.step_loss(model.forward((x,), training=True), training=True)
    gradients = tape.gradient(loss, weights + frozen)
    assert all(g is None for g in gradients[len(weights) :])
    assert all(g is not None and np.abs(g).max() > 0 for g in gradients[: len(weights)])


def test_gradient_cache_gives_the_plain_steps_weights():
    plain = make(DINO(num_prototypes=K, momentum=0.9))
    initial = plain.get_weights()
    plain.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    cached = make(DINO(num_prototypes=K, momentum=0.9), gradient_cache_chunks=2)
    cached.set_weights(initial)
    cached.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    for got, want in zip(cached.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


# ------------------------------------------------------------------ multi-crop
def test_local_views_from_the_local_augmenter_reach_the_student_only():
    images = np.random.default_rng(0).uniform(size=(BATCH, 16, 16, 3)).astype("float32")
    local = kc.layers.SimCLRAugmentation(
        image_size=(8, 8), value_range=(0, 1), crop_area=(0.05, 0.4)
    )
    method = DINO(num_prototypes=K, local_augmenter=local, num_local_views=3)
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(None, None, 3), width=2, batch_norm=False),
        projection_head=head(4),
        augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16), value_range=(0, 1)),
        method=method,
        seed=1,
    )
    model.compile(optimizer="adam")
    prepared = method.prepare(model, images, training=True, seed=tf.constant([1, 2]))
    assert tuple(prepared.inputs["global"].shape) == (BATCH, 2, 16, 16, 3)
    assert tuple(prepared.inputs["local"].shape) == (BATCH, 3, 8, 8, 3)
    step = model.forward(images, training=True)
    assert tuple(step.y_pred["embeddings"].shape) == (BATCH, 2 + 2 + 3, K)
    history = model.fit(images, batch_size=2, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))


def test_views_made_in_tf_data_any_number_of_local_ones():
    model = make()
    for num_views in (2, 3, 5):
        step = model.forward((views(BATCH, num_views),), training=False)
        assert tuple(step.y_pred["embeddings"].shape) == (BATCH, 2 + num_views, K)
    g1, g2, l1 = views(BATCH, 3)
    with pytest.raises(ValueError, match="`local_2` and `local_1` must have the same shape"):
        model.forward(((g1, g2, l1, l1[:, :4]),), training=False)
    with pytest.raises(ValueError, match="`local_1`.*`global_1`"):
        model.forward(((g1, g2, l1[:2]),), training=False)
    with pytest.raises(ValueError, match="wrong structure.*global_1, global_2"):
        model.forward(((g1,),), training=False)


# ------------------------------------------------------------------ saving and export
def test_keras_round_trip_restores_prototypes_teacher_and_center(tmp_path):
    local = kc.layers.SimCLRAugmentation(image_size=(8, 8))
    method = DINO(num_prototypes=K, momentum=0.9, total_steps=12, local_augmenter=local)
    model = make(method, optimizer=keras.optimizers.Adam(0.01))
    model.fit(dataset(), epochs=1, verbose=0, shuffle=False)
    assert np.abs(model.method.center.numpy()).max() > 0
    model.save(tmp_path / "dino.keras")
    restored = keras.models.load_model(tmp_path / "dino.keras")
    assert json.dumps(restored.get_config()) == json.dumps(model.get_config())
    assert isinstance(restored.method, DINO) and restored.method.num_local_views == 8
    assert isinstance(restored.method.local_augmenter, kc.layers.SimCLRAugmentation)
    for got, want in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(restored.method.center.numpy(), model.method.center.numpy())
    x = views(BATCH, seed=1)[0]
    np.testing.assert_array_equal(teacher_logits(restored, x), teacher_logits(model, x))
    np.testing.assert_array_equal(student_logits(restored, x), student_logits(model, x))


def test_backup_and_restore_resume_keeps_teacher_and_center(tmp_path):
    def fresh():
        keras.utils.set_random_seed(0)
        method = DINO(num_prototypes=K, momentum=0.9, total_steps=8, warmup_steps=4)
        return make(method, optimizer=keras.optimizers.Adam(0.01))

    resumed, straight = resumed_and_straight(fresh, dataset, tmp_path / "backup")
    np.testing.assert_allclose(resumed.method.center, straight.method.center, atol=1e-6)


def test_export_holds_the_encoder_only(tmp_path):
    encoder = kc.encoders.small_cnn(input_shape=(8, 8, 3), width=2)
    model = kc.ContrastiveModel(
        encoder=encoder, projection_head=head(4), method=DINO(num_prototypes=K)
    )
    assert_export_holds_the_encoder_only(model, encoder, tmp_path / "encoder")


# ------------------------------------------------------------------ replicas
@pytest.mark.parametrize(
    "replicas, global_batch", [(2, 8), (2, 7), (4, 11)], ids=["2x4", "2x(4+3)", "4x(3+3+3+2)"]
)
def test_replicas_equal_one_device_on_the_same_global_batch(replicas, global_batch):
    """Loss, weights, teacher and center: the center averages over the global batch."""

    def method():
        return DINO(num_prototypes=K, momentum=0.8, total_steps=4, center_momentum=0.5)

    n = 3 * global_batch
    single = make(method())
    initial = single.get_weights()
    want = single.fit(dataset(global_batch, n, 3), epochs=1, verbose=0, shuffle=False).history
    strategy = cpu_strategy(replicas)
    with strategy.scope():
        mirrored = make(method())
        mirrored.set_weights(initial)
    got = mirrored.fit(dataset(global_batch, n, 3), epochs=1, verbose=0, shuffle=False).history
    for metric in ("loss", "embedding_std"):
        np.testing.assert_allclose(got[metric], want[metric], rtol=1e-5)
    for got_weight, want_weight in zip(mirrored.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(got_weight, want_weight, atol=1e-5)
    center = strategy.experimental_local_results(mirrored.method.center.value)
    for local in center:  # every replica holds the single device's center
        np.testing.assert_allclose(local, single.method.center.numpy(), atol=1e-6)


def test_a_teacher_with_batch_normalization_trains_on_two_replicas():
    """Each replica's teacher normalizes its own batch (as the student's BN): finite, in step."""
    strategy = cpu_strategy(2)
    images = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype("float32")
    with strategy.scope():
        model = kc.ContrastiveModel(
            encoder=kc.encoders.small_cnn(input_shape=(8, 8, 3), width=2),
            projection_head=head(4, batch_norm=True),
            augmenter=kc.layers.SimCLRAugmentation(image_size=(8, 8), value_range=(0, 1)),
            method=DINO(num_prototypes=K),
        )
        model.compile(optimizer="adam")
    assert model.method.teacher.batch_statistics
    history = model.fit(images, batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    for variable in model.method.teacher.weights:
        # Moving statistics follow each replica's own (Keras keeps unsynchronized BN's per
        # replica); the teacher normalizes with batch statistics and never reads them.
        if "moving" not in variable.path:
            first, second = strategy.experimental_local_results(variable.value)
            np.testing.assert_allclose(first, second, atol=1e-6)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_prototypes": 0}, ValueError, "`num_prototypes` must be an int >= 1"),
        ({"momentum": 1.0}, ValueError, r"`momentum` must be a finite number in \[0, 1\)"),
        ({"total_steps": 0}, ValueError, "`total_steps` must be an int >= 1"),
        ({"teacher_temperature": 0.0}, ValueError, "`teacher_temperature` must be"),
        ({"warmup_teacher_temperature": "0.04"}, TypeError, "`warmup_teacher_temperature`"),
        ({"warmup_steps": -1}, ValueError, "`warmup_steps` must be an int >= 0"),
        ({"center_momentum": 1.0}, ValueError, "`center_momentum` must be"),
        ({"num_local_views": 0}, ValueError, "`num_local_views` must be an int >= 1"),
        ({"local_augmenter": "crop"}, TypeError, "`local_augmenter` must be None or a"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        DINO(**kwargs)


def test_a_loss_of_another_contract_is_refused_naming_dinos():
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(4), method=DINO())
    with pytest.raises(
        ValueError, match="DINO trains with a loss whose.*NNCLRLoss declares.*DINOLoss"
    ):
        model.compile(loss=kc.losses.NNCLRLoss())
    assert model.method.prototypes.kernel.shape == (4, 65536)  # DINO's K
