"""The open training core: any loss with a fitting contract, explicit state, real metrics."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from towers import CAPTIONS, clip_model, head, mlp

import keras_contrastive as kc
from keras_contrastive import losses


def labelled(n=32, seed=0):
    """Four well separated classes of 6-d features, and their int32 labels."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 4).astype("int32")
    centres = rng.normal(size=(4, 6)) * 3
    return (centres[labels] + rng.normal(size=(n, 6))).astype("float32"), labels


def clip_batches():
    images = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    texts = np.array(CAPTIONS * 2)
    return tf.data.Dataset.from_tensor_slices({"image": images, "text": texts}).batch(4)


# ---------------------------------------------------------- the loss is never written
class RecordingCLIPLoss(losses.CLIPLoss):
    """A user's subclass that reads `self.temperature` in `call`."""

    seen = []

    def call(self, y_true, y_pred):
        type(self).seen.append(type(self.temperature))
        return super().call(y_true, y_pred)


def test_compiled_loss_is_untouched_during_fit_with_a_learned_temperature():
    RecordingCLIPLoss.seen.clear()
    model = clip_model(None, None)  # logit_scale="learnable"
    loss = RecordingCLIPLoss(temperature=0.05)
    before = dict(vars(loss))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(clip_batches(), epochs=2, verbose=0)
    model.evaluate(clip_batches(), verbose=0)
    assert RecordingCLIPLoss.seen and set(RecordingCLIPLoss.seen) == {float}
    assert loss.temperature == 0.05 and vars(loss).keys() == before.keys()
    assert all(vars(loss)[k] is before[k] for k in before)
    # ...while the loss trained with the learned one: it moved away from CLIP's 0.07.
    assert abs(float(model.logit_scale.temperature) - 0.07) > 1e-4


def test_learned_temperature_reaches_the_loss_as_state():
    model = clip_model(None, None)
    model.compile(optimizer="sgd")
    step = model.forward(next(iter(clip_batches())), training=False)
    assert set(step.y_pred) == {"embeddings", "temperature"}
    configured = losses.CLIPLoss(temperature=float(model.logit_scale.temperature))
    np.testing.assert_allclose(
        model.loss(None, step.y_pred), configured(None, step.embeddings), rtol=1e-6
    )


# ------------------------------------------------------- any loss whose contract fits
def test_keras_circle_loss_trains_in_the_supervised_method():
    x, y = labelled()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=keras.losses.Circle())
    assert isinstance(model.method, kc.methods.Supervised)
    history = model.fit(x, y, batch_size=16, epochs=12, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    # Same-class nearest neighbours (chance: 3 of 15 candidates); measured 0.69-0.94.
    assert history["contrastive_accuracy"][-1] > 0.5


class CentroidLoss(keras.losses.Loss):
    """A user's loss: squared distance of each embedding to its class's batch mean."""

    def call(self, y_true, y_pred):
        one_hot = ops.one_hot(ops.cast(y_true, "int32"), 4)
        means = ops.matmul(ops.transpose(one_hot), y_pred) / (
            ops.sum(one_hot, axis=0)[:, None] + 1e-6
        )
        return ops.sum((y_pred - ops.matmul(one_hot, means)) ** 2, axis=-1)


class AlignmentLoss(keras.losses.Loss):
    """A user's two-view loss declaring its contract: 1 - cosine of the two views."""

    contract = losses.LossContract(labels="ignored", y_pred="pair")

    def call(self, y_true, y_pred):
        z = kc.ops.l2_normalize(y_pred)
        return 1.0 - ops.sum(z[:, 0] * z[:, 1], axis=-1)


def test_a_users_loss_trains_with_the_default_contract_and_a_declared_one():
    x, y = labelled()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=CentroidLoss())
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]

    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=AlignmentLoss())
    assert isinstance(model.method, kc.methods.TwoView)
    history = model.fit((x, x + 0.3), batch_size=16, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_to_dataset_yields_two_views_as_one_input():
    x, _ = labelled()
    dataset = kc.datasets.to_dataset((x, x + 0.1), batch_size=16)
    (views,) = next(iter(dataset))
    assert len(views) == 2 and tuple(views[0].shape) == (16, 6)
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=losses.NTXentLoss(0.2))
    history = model.fit(dataset, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize(
    "method, loss, declared",
    [
        (kc.methods.Supervised(), losses.NTXentLoss(), "labels='ignored'"),
        (kc.methods.TwoView(), keras.losses.Circle(), "labels='integer', y_pred \\(B, D\\)"),
        (kc.methods.Pairs(), losses.SupConLoss(), "labels='integer'"),
        (kc.methods.MoCo(queue_size=8), losses.NTXentLoss(), "NTXentLoss declares"),
    ],
)
def test_a_loss_of_the_wrong_contract_is_refused_naming_the_expected_one(method, loss, declared):
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(), method=method)
    with pytest.raises(
        ValueError, match=f"trains with a loss whose kc.losses.LossContract.*{declared}"
    ):
        model.compile(loss=loss)


def test_state_the_loss_does_not_declare_is_refused():
    model = clip_model(None, None)  # a learned temperature, which AlignmentLoss cannot take
    with pytest.raises(ValueError, match=r"taking state \('temperature',\).*AlignmentLoss"):
        model.compile(loss=AlignmentLoss())


def test_loss_and_metrics_must_be_objects():
    model = kc.ContrastiveModel(encoder=mlp())
    with pytest.raises(ValueError, match="`loss` must be a keras.losses.Loss instance"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="`metrics` must be keras.metrics.Metric instances"):
        model.compile(metrics=["accuracy"])
    with pytest.raises(ValueError, match="`method` must be a kc.methods.Method"):
        kc.ContrastiveModel(encoder=mlp(), method="simclr")


# ---------------------------------------------------------------------- metrics
def test_compile_metrics_are_reported_after_the_defaults():
    x, y = labelled()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8), probe_classes=4)
    model.compile(
        optimizer=keras.optimizers.Adam(0.02),
        loss=losses.SupConLoss(0.2),
        metrics=[kc.metrics.ContrastiveAccuracy(name="accuracy_again")],
    )
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    names = ["loss", "contrastive_accuracy", "accuracy_again", "probe_accuracy"]
    assert [m.name for m in model.metrics] == names and set(history) == set(names)
    np.testing.assert_allclose(history["accuracy_again"], history["contrastive_accuracy"])
    results = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(results) == set(history)


def test_a_metric_named_like_a_default_replaces_it():
    x, y = labelled()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8))
    first_view = kc.metrics.ContrastiveAccuracy(queries="first_view")
    model.compile(loss=losses.NTXentLoss(), metrics=[first_view])
    history = model.fit((x, x + 0.1), batch_size=16, epochs=1, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy"}
    assert model.metrics[1:] == [first_view]


def test_compile_metrics_survive_keras_saving(tmp_path):
    x, y = labelled()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8))
    model.compile(loss=losses.SupConLoss(), metrics=[kc.metrics.ContrastiveAccuracy(name="acc")])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert [m.name for m in restored.metrics] == ["loss", "contrastive_accuracy", "acc"]
    assert isinstance(restored.method, kc.methods.Supervised)
    expected = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    actual = restored.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-5)


# -------------------------------------------------------------- a method of one's own
@keras.saving.register_keras_serializable(package="tests")
class NoisyCopies(kc.methods.Method):
    """A user's method in a few lines: two noisy copies of each input are the views."""

    layout = "`x` = features (B, F)"

    def __init__(self, stddev=0.2, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev
        self.noise_seed = keras.random.SeedGenerator(0)

    def default_loss(self):
        return losses.NTXentLoss(temperature=0.2)

    def default_metrics(self):
        return [kc.metrics.ContrastiveAccuracy()]

    def prepare(self, model, data, training, seed):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        noise = keras.random.normal((2, *ops.shape(x)), stddev=self.stddev, seed=self.noise_seed)
        return kc.methods.Prepared(ops.stack([x + noise[0], x + noise[1]], axis=1))

    def towers(self, model, views, training):
        flat = ops.reshape(views, (-1, views.shape[-1]))
        z = model.projection_head(model.encoder(flat, training=training), training=training)
        return {"embeddings": ops.reshape(z, (-1, 2, z.shape[-1]))}

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


def test_a_new_method_is_one_class_and_needs_no_model_change(tmp_path):
    x, _ = labelled()
    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8), method=NoisyCopies())
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    assert isinstance(model.loss, losses.NTXentLoss)
    history = model.fit(x, batch_size=16, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert history["contrastive_accuracy"][-1] > history["contrastive_accuracy"][0]
    restored = kc.ContrastiveModel.from_config(model.get_config())
    assert isinstance(restored.method, NoisyCopies) and restored.method.stddev == 0.2


def test_a_method_without_a_default_loss_asks_for_one():
    class NoDefault(NoisyCopies):
        def default_loss(self):
            return kc.methods.Method.default_loss(self)

    model = kc.ContrastiveModel(encoder=mlp(), projection_head=head(8), method=NoDefault())
    with pytest.raises(ValueError, match="NoDefault has no default loss: pass `loss=`"):
        model.compile()
    model.compile(loss=losses.NTXentLoss())  # a loss given: fine
