"""DINOLoss against a float64 NumPy reference: values, gradients, state, numerics, replicas."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import replica_sum

from keras_contrastive.losses._base import LossContract, contract_of
from keras_contrastive.losses.dino_loss import DINOLoss, dino_loss


def softmax(logits):
    """softmax of one row, in float64."""
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    top = logits.max()
    return logits - top - np.log(np.sum(np.exp(logits - top)))


def reference(rows, num_global=2, tau_s=0.1, tau_t=0.07, center=None):
    """`(B,)` mean over pairs (g, v ≠ g) of −Σ_k q_g[k] log p_v[k], with explicit loops."""
    rows = np.asarray(rows, np.float64)
    num_prototypes = rows.shape[-1]
    center = np.zeros(num_prototypes) if center is None else np.asarray(center, np.float64)
    num_views = rows.shape[1] - num_global
    out = []
    for example in rows:
        total, pairs = 0.0, 0
        for g in range(num_global):
            q = softmax((example[g] - center) / tau_t)
            for v in range(num_views):
                if v == g:
                    continue
                log_p = log_softmax(example[num_global + v] / tau_s)
                total += -sum(q[k] * log_p[k] for k in range(num_prototypes))
                pairs += 1
        assert pairs == num_global * num_views - num_global
        out.append(total / pairs)
    return np.array(out)


def reference_gradient(rows, num_global=2, tau_s=0.1, tau_t=0.07, center=None):
    """d mean(loss) / d rows: (1/B)(1/pairs) Σ_{g ≠ v} (p_v − q_g)/τ_s; 0 for the teacher."""
    rows = np.asarray(rows, np.float64)
    batch, total_rows, num_prototypes = rows.shape
    center = np.zeros(num_prototypes) if center is None else np.asarray(center, np.float64)
    num_views = total_rows - num_global
    pairs = num_global * num_views - num_global
    gradient = np.zeros_like(rows)
    for b in range(batch):
        targets = [softmax((rows[b, g] - center) / tau_t) for g in range(num_global)]
        for v in range(num_views):
            p = softmax(rows[b, num_global + v] / tau_s)
            for g in range(num_global):
                if g != v:
                    gradient[b, num_global + v] += (p - targets[g]) / tau_s
    return gradient / (batch * pairs)


CASES = [
    # batch, G, V, K, tau_s, tau_t, centered
    (3, 1, 2, 4, 0.1, 0.07, False),
    (2, 1, 4, 5, 0.2, 0.04, True),
    (4, 2, 2, 6, 0.1, 0.07, False),
    (3, 2, 4, 5, 0.1, 0.04, True),
    (2, 2, 6, 3, 0.5, 0.3, True),
    (5, 3, 3, 4, 1.0, 0.5, False),
]


@pytest.mark.parametrize("batch,num_global,num_views,k,tau_s,tau_t,centered", CASES)
def test_values_match_reference(rng, batch, num_global, num_views, k, tau_s, tau_t, centered):
    rows = rng.normal(scale=0.5, size=(batch, num_global + num_views, k))
    center = rng.normal(scale=0.5, size=k) if centered else None
    kwargs = dict(
        student_temperature=tau_s,
        teacher_temperature=tau_t,
        num_global_views=num_global,
    )
    expected = reference(rows, num_global, tau_s, tau_t, center)
    values = dino_loss(
        None,
        rows.astype("float32"),
        center=None if center is None else center.astype("float32"),
        **kwargs,
    )
    assert values.shape == (batch,) and values.dtype == "float32"
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    exact = dino_loss(None, rows, center=center, **kwargs)
    assert exact.shape == (batch,) and exact.dtype == "float64"
    # 1e-7, not 1e-12: a Python-float temperature reaches float64 rounded to float32.
    np.testing.assert_allclose(exact, expected, rtol=1e-7, atol=1e-9)


def test_float64_is_exact_for_representable_temperatures(rng):
    rows = rng.normal(size=(3, 5, 4))
    center = rng.normal(size=4)
    values = dino_loss(None, rows, 0.5, 0.25, center, num_global_views=2)
    assert values.dtype == "float64"
    np.testing.assert_allclose(values, reference(rows, 2, 0.5, 0.25, center), rtol=1e-12)


def test_defaults(rng):
    rows = rng.normal(size=(3, 4, 5)).astype("float32")
    np.testing.assert_allclose(
        dino_loss(None, rows), reference(rows, 2, 0.1, 0.07), rtol=1e-5, atol=1e-6
    )
    loss = DINOLoss()
    assert (loss.student_temperature, loss.teacher_temperature, loss.num_global_views) == (
        0.1,
        0.07,
        2,
    )
    assert loss.name == "dino_loss" and loss.reduction == "sum_over_batch_size"


def test_the_teacher_never_targets_its_own_view():
    # G = 2, V = 2: student view 0 is scored against teacher 1 only, view 1 against teacher 0.
    # Teacher g is sharp on prototype g, student view v uniform except a bump on prototype v:
    # the same-view pairs would be the cheap ones, the cross pairs are the costly ones.
    sharp = np.array([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    student = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    rows = np.concatenate([sharp, student])[None].astype("float64")
    tau_s = 1.0
    cross = -log_softmax(student[1] / tau_s)[0]  # teacher 0 (prototype 0) vs student view 1
    np.testing.assert_allclose(dino_loss(None, rows, student_temperature=tau_s), [cross], rtol=1e-9)
    np.testing.assert_allclose(cross, np.log(np.e + 2.0), rtol=1e-12)  # not log(e + 2) − 1


@pytest.mark.parametrize("num_global,num_views", [(1, 3), (2, 2), (2, 5)])
def test_gradient_matches_reference(rng, num_global, num_views):
    rows = rng.normal(size=(4, num_global + num_views, 5))
    center = rng.normal(size=5)
    variable, center_variable = tf.Variable(rows), tf.Variable(center)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            dino_loss(
                None,
                variable,
                student_temperature=0.25,
                teacher_temperature=0.125,
                center=center_variable,
                num_global_views=num_global,
            )
        )
    gradient, center_gradient = tape.gradient(loss, [variable, center_variable])
    expected = reference_gradient(rows, num_global, 0.25, 0.125, center)
    np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(gradient.numpy()[:, :num_global], 0.0)  # the teacher's rows
    assert center_gradient is None or np.all(center_gradient.numpy() == 0.0)

    # The formula is the derivative of the reference (central differences on a student entry).
    eps = 1e-6
    for index in [(0, num_global, 0), (3, num_global + num_views - 1, 4)]:
        step = np.zeros_like(rows)
        step[index] = eps
        high = reference(rows + step, num_global, 0.25, 0.125, center).mean()
        low = reference(rows - step, num_global, 0.25, 0.125, center).mean()
        np.testing.assert_allclose(expected[index], (high - low) / (2 * eps), rtol=1e-5)


def test_class_mean_state_and_sample_weights(rng):
    rows = rng.normal(scale=0.5, size=(4, 5, 6)).astype("float32")  # G = 2, V = 3
    center = rng.normal(scale=0.5, size=6).astype("float32")
    loss = DINOLoss(student_temperature=0.2, teacher_temperature=0.07)
    np.testing.assert_allclose(loss(None, rows), reference(rows, 2, 0.2, 0.07).mean(), rtol=1e-5)
    state = {"embeddings": rows, "teacher_temperature": tf.constant(0.04), "center": center}
    np.testing.assert_allclose(
        loss(None, state), reference(rows, 2, 0.2, 0.04, center).mean(), rtol=1e-5
    )
    assert loss.teacher_temperature == 0.07  # the configured one is left as it was
    only_temperature = {"embeddings": rows, "teacher_temperature": 0.5}
    np.testing.assert_allclose(
        loss(None, only_temperature), reference(rows, 2, 0.2, 0.5).mean(), rtol=1e-5
    )
    only_center = {"embeddings": rows, "center": center}
    np.testing.assert_allclose(
        loss(None, only_center), reference(rows, 2, 0.2, 0.07, center).mean(), rtol=1e-5
    )
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    weighted = loss(None, rows, sample_weight=weights)
    expected = np.sum(reference(rows, 2, 0.2, 0.07) * weights) / 4
    np.testing.assert_allclose(weighted, expected, rtol=1e-5)
    summed = DINOLoss(student_temperature=0.2, reduction="sum")(None, rows)
    np.testing.assert_allclose(summed, reference(rows, 2, 0.2, 0.07).sum(), rtol=1e-5)


def test_a_batch_of_one_is_fine(rng):
    rows = rng.normal(size=(1, 3, 4)).astype("float32")
    loss = DINOLoss(num_global_views=1)
    np.testing.assert_allclose(loss(None, rows), reference(rows, 1).mean(), rtol=1e-5)
    np.testing.assert_allclose(dino_loss(None, rows, num_global_views=1), reference(rows, 1))


@pytest.mark.parametrize("scale", [1e30, 3e38])
@pytest.mark.parametrize("tau", [0.1, 1e-4])
def test_finite_for_extreme_logits_centers_and_temperatures(rng, scale, tau):
    signs = np.sign(rng.normal(size=(3, 5, 4)))
    rows = (signs * scale).astype("float32")
    rows[:, :, 0] = rng.normal(size=(3, 5)).astype("float32")  # ordinary entries mixed in
    center = (-np.sign(rows[0, 0]) * scale).astype("float32")  # the opposite extreme
    variable, center_variable = tf.Variable(rows), tf.Variable(center)
    with tf.GradientTape() as tape:
        values = dino_loss(
            None,
            variable,
            student_temperature=tau,
            teacher_temperature=tau,
            center=center_variable,
        )
    assert np.all(np.isfinite(values)) and np.all(values >= -1e-6)
    gradient = tape.gradient(values, variable)
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(gradient.numpy()[:, :2], 0.0)


def test_tiny_temperatures_on_ordinary_logits_match_reference(rng):
    rows = rng.normal(size=(3, 4, 5))
    variable = tf.Variable(rows.astype("float32"))
    with tf.GradientTape() as tape:
        values = dino_loss(None, variable, student_temperature=1e-2, teacher_temperature=1e-4)
    np.testing.assert_allclose(values, reference(rows, 2, 1e-2, 1e-4), rtol=1e-4)
    assert np.all(np.isfinite(tape.gradient(values, variable)))


def test_half_precision_inputs_compute_in_float32(rng):
    half = tf.cast(rng.normal(size=(3, 4, 5)), "float16")
    values = dino_loss(None, half, center=np.zeros(5, "float16"))
    assert values.dtype == "float32" and np.all(np.isfinite(values))
    np.testing.assert_allclose(values, reference(tf.cast(half, "float64").numpy()), rtol=1e-4)


@pytest.mark.parametrize("num_global,num_views", [(1, 2), (2, 2), (2, 6)])
def test_closed_form_cases_give_log_k(num_global, num_views):
    k = 7
    equal = np.full((2, num_global + num_views, k), 3.0, "float32")
    np.testing.assert_allclose(
        dino_loss(None, equal, num_global_views=num_global), [np.log(k)] * 2, rtol=1e-6
    )
    sharp = equal.copy()
    sharp[:, :num_global] = 0.0
    sharp[:, :num_global, 2] = 1e3  # the teacher one-hot, the student uniform
    np.testing.assert_allclose(
        dino_loss(None, sharp, num_global_views=num_global), [np.log(k)] * 2, rtol=1e-6
    )
    # A teacher as sharp as the student's agreeing view: loss log(1 + (K−1) e^{−a/τ_s}) → 0.
    agree = sharp.copy()
    agree[:, num_global:] = 0.0
    agree[:, num_global:, 2] = 1.0
    expected = np.log(1 + (k - 1) * np.exp(-10.0))
    np.testing.assert_allclose(
        dino_loss(None, agree, num_global_views=num_global), [expected] * 2, atol=1e-6
    )


def test_xla_gives_the_same_values_and_gradients(rng):
    rows = tf.constant(rng.normal(size=(5, 6, 4)).astype("float32"))
    center = tf.constant(rng.normal(size=4).astype("float32"))
    loss = DINOLoss(student_temperature=0.2)

    def value_and_gradient():
        with tf.GradientTape() as tape:
            tape.watch(rows)
            values = dino_loss(None, rows, 0.2, 0.05, center)
            mean = loss(None, {"embeddings": rows, "teacher_temperature": 0.05, "center": center})
        return values, mean, tape.gradient(mean, rows)

    eager = value_and_gradient()
    xla = tf.function(value_and_gradient, jit_compile=True)()
    for got, want in zip(xla, eager, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eager[1], reference(rows.numpy(), 2, 0.2, 0.05, center).mean(), 1e-5)


def test_contract_and_config_round_trip(rng):
    assert DINOLoss.contract == LossContract(
        labels="ignored", y_pred="views", state=("teacher_temperature", "center")
    )
    assert contract_of(DINOLoss()) == DINOLoss.contract
    loss = DINOLoss(
        student_temperature=0.2,
        teacher_temperature=0.04,
        num_global_views=1,
        reduction="sum",
        name="dino",
    )
    config = loss.get_config()
    json.loads(json.dumps(config))
    for again in (
        DINOLoss.from_config(config),
        keras.losses.deserialize(keras.losses.serialize(loss)),
        keras.losses.deserialize(json.loads(json.dumps(keras.losses.serialize(loss)))),
    ):
        assert type(again) is DINOLoss
        assert (
            again.student_temperature,
            again.teacher_temperature,
            again.num_global_views,
            again.reduction,
            again.name,
        ) == (0.2, 0.04, 1, "sum", "dino")
        assert again.get_config() == config
    rows = rng.normal(size=(3, 4, 5)).astype("float32")
    np.testing.assert_allclose(DINOLoss.from_config(config)(None, rows), loss(None, rows))


def test_bad_arguments_and_inputs_are_refused(rng):
    with pytest.raises(ValueError, match="`student_temperature` must be a finite number > 0"):
        DINOLoss(student_temperature=0.0)
    with pytest.raises(ValueError, match="`student_temperature`"):
        DINOLoss(student_temperature=-0.1)
    with pytest.raises(TypeError, match="`student_temperature`"):
        DINOLoss(student_temperature="0.1")
    with pytest.raises(ValueError, match="`teacher_temperature`"):
        DINOLoss(teacher_temperature=0.0)
    with pytest.raises(ValueError, match="`num_global_views` must be an int >= 1"):
        DINOLoss(num_global_views=0)
    rows = rng.normal(size=(4, 4, 5)).astype("float32")
    with pytest.raises(ValueError, match="`teacher_temperature`"):
        dino_loss(None, rows, teacher_temperature=-1.0)
    with pytest.raises(ValueError, match="`num_global_views`"):
        dino_loss(None, rows, num_global_views=0)
    loss = DINOLoss()
    with pytest.raises(ValueError, match=r"y_pred.*\(B, G \+ V, K\)"):
        loss(None, rng.normal(size=(4, 5)).astype("float32"))
    with pytest.raises(ValueError, match=r"V >= G = 2.*Received: y_pred.shape=\(4, 3, 5\)"):
        loss(None, rng.normal(size=(4, 3, 5)).astype("float32"))
    with pytest.raises(ValueError, match=r"a view besides each global one"):
        DINOLoss(num_global_views=1)(None, rng.normal(size=(4, 2, 5)).astype("float32"))
    with pytest.raises(ValueError, match=r"`center` must be a \(K,\) vector.*\(6,\)"):
        loss(None, {"embeddings": rows, "center": np.zeros(6, "float32")})
    with pytest.raises(ValueError, match=r"`center` must be a \(K,\) vector.*\(1, 5\)"):
        loss(None, {"embeddings": rows, "center": np.zeros((1, 5), "float32")})
    with pytest.raises(ValueError, match="`center` must contain only finite values"):
        loss(None, {"embeddings": rows, "center": np.full(5, np.nan, "float32")})
    with pytest.raises(ValueError, match=r"`y_pred\['teacher_temperature'\]` must be a scalar"):
        loss(None, {"embeddings": rows, "teacher_temperature": np.ones(2, "float32")})
    bad = rows.copy()
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        loss(None, bad)
    with pytest.raises(ValueError, match="accepted keys"):
        loss(None, {"embeddings": rows, "temperature": 0.1})
    with pytest.raises(ValueError, match="accepted keys"):
        loss(None, {"center": np.zeros(5, "float32")})


@pytest.mark.parametrize("sizes", [(4, 4), (5, 3)], ids=["even", "uneven"])
def test_replicas_sum_to_the_single_device_value_and_gradient(rng, sizes):
    rows = rng.normal(size=(8, 5, 4)).astype("float32")  # G = 2, V = 3
    center = rng.normal(size=4).astype("float32")

    def fn(x):
        return dino_loss(None, x, 0.2, 0.05, tf.constant(center))

    variable = tf.Variable(rows)
    with tf.GradientTape() as tape:
        single = tf.reduce_mean(fn(variable))
    single_gradient = tape.gradient(single, variable)
    np.testing.assert_allclose(single, reference(rows, 2, 0.2, 0.05, center).mean(), rtol=1e-5)

    total, gradient = replica_sum(fn, rows, sizes)
    np.testing.assert_allclose(total, single, rtol=1e-5)
    np.testing.assert_allclose(gradient, single_gradient, rtol=1e-4, atol=1e-6)
