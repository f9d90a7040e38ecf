"""kc.callbacks.BackupAndRestore: atomic backups, fall back to the previous one, exact resume.

The SIGKILL tests (a real process killed during writes) are in
tests/models/test_fault_tolerance.py; these interrupt `fit` in-process with an exception.
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_contrastive as kc

IMAGES = np.random.default_rng(0).uniform(size=(24, 8, 8, 3)).astype("float32")


def make_model(run_eagerly=False, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(8, activation="tanh")]
    )
    model = kc.ContrastiveModel(
        encoder=encoder,
        projection_head=kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4, batch_norm=False),
        augmenter=kc.layers.SimCLRAugmentation(image_size=(8, 8), value_range=(0, 1)),
        seed=7,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=kc.losses.NTXentLoss(0.2),
        run_eagerly=run_eagerly,
        steps_per_execution=steps_per_execution,
    )
    return model


class Interrupt(keras.callbacks.Callback):
    """Raises after batch `batch` of epoch `epoch` has been trained (and backed up)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


def fit(model, callbacks, epochs=3):
    return model.fit(
        IMAGES, batch_size=4, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
    )


def weights(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


@pytest.mark.parametrize(
    ("run_eagerly", "steps_per_execution", "save_freq", "stop_at", "resume_step"),
    [(False, 1, 4, (1, 3), 2), (True, 1, 3, (1, 3), 3), (False, 2, 4, (1, 3), 2)],
    ids=["graph", "eager", "steps_per_execution"],
)
def test_resume_mid_epoch_equals_an_uninterrupted_run(
    tmp_path, run_eagerly, steps_per_execution, save_freq, stop_at, resume_step
):
    """6 batches an epoch, backups every `save_freq` batches, stopped after `stop_at`."""
    straight = make_model(run_eagerly, steps_per_execution)
    want = fit(straight, []).history["loss"]
    backup = kc.callbacks.BackupAndRestore(tmp_path / "backup", save_freq=save_freq)
    interrupted = make_model(run_eagerly, steps_per_execution)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(interrupted, [backup, Interrupt(*stop_at)])
    latest = sorted(os.listdir(tmp_path / "backup"))[-1]
    with open(tmp_path / "backup" / latest / "state.json") as file:
        assert json.load(file) == {"epoch": 1, "step": resume_step}
    resumed = make_model(run_eagerly, steps_per_execution)
    history = fit(resumed, [backup]).history["loss"]
    np.testing.assert_allclose(weights(resumed), weights(straight), atol=1e-6)
    # The resumed epoch's loss averages over its batches before and after the interruption.
    np.testing.assert_allclose(history, want[1:], rtol=1e-6)
    assert not (tmp_path / "backup").exists()  # delete_checkpoint=True


def test_a_damaged_latest_backup_falls_back_to_the_previous_one(tmp_path):
    straight = make_model()
    fit(straight, [])
    backup = kc.callbacks.BackupAndRestore(tmp_path, save_freq=1, delete_checkpoint=False)
    with pytest.raises(RuntimeError):
        fit(make_model(), [backup, Interrupt(1, 4)])
    backups = sorted(os.listdir(tmp_path))
    assert len(backups) == 2  # the newest and the previous one
    latest = tmp_path / backups[-1] / "model.weights.h5"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated, as by a failing disk
    resumed = make_model()
    with pytest.warns(UserWarning, match="Cannot restore the backup"):
        fit(resumed, [backup])
    np.testing.assert_allclose(weights(resumed), weights(straight), atol=1e-6)


def test_no_readable_backup_is_a_clear_error(tmp_path):
    (tmp_path / "backup-000000007").mkdir()  # e.g. written by something else
    backup = kc.callbacks.BackupAndRestore(tmp_path)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="No backup in `backup_dir`"):
        fit(make_model(), [backup])


def test_a_later_fit_starts_at_its_own_initial_epoch(tmp_path):
    model = make_model()
    backup = kc.callbacks.BackupAndRestore(tmp_path, save_freq="epoch")
    with pytest.raises(RuntimeError):
        fit(model, [backup, Interrupt(1, 0)])
    fit(model, [backup])  # resumes at epoch 1
    assert len(fit(model, [], epochs=2).history["loss"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backup_dir": ""}, ValueError, "backup_dir"),
        ({"backup_dir": None}, TypeError, "backup_dir"),
        ({"save_freq": "batch"}, ValueError, "save_freq"),
        ({"save_freq": 0}, ValueError, "save_freq"),
        ({"save_freq": 2.0}, TypeError, "save_freq"),
        ({"save_freq": True}, TypeError, "save_freq"),
        ({"delete_checkpoint": "yes"}, TypeError, "delete_checkpoint"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, error, match):
    kwargs = {"backup_dir": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        kc.callbacks.BackupAndRestore(**kwargs)
