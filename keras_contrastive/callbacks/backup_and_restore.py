"""Fault-tolerant backups during `fit`: atomic writes and an exact mid-epoch resume."""

import json
import os
import shutil
import warnings

import keras
import numpy as np

from keras_contrastive._atomic import atomic_directory
from keras_contrastive.ops._validation import check_bool, check_int

BACKUP_PREFIX = "backup-"
WEIGHTS_FILE = "model.weights.h5"
VARIABLES_FILE = "variables.npz"
STATE_FILE = "state.json"
KEPT_BACKUPS = 2


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up the training state and resumes a killed `fit` where it stopped.

    A drop-in for `keras.callbacks.BackupAndRestore` that survives a kill at
    any moment, including during a write, and resumes mid-epoch at the right
    batch, so a killed and restarted run ends with the same weights as an
    uninterrupted one.

    Each backup is one directory `backup_dir/backup-NNNNNNNNN/` holding the
    weights of the model and optimizer (`model.weights.h5`, as
    `model.save_weights` writes them), the other state `fit` needs
    (`variables.npz`: the non-trainable variables, which include the random
    seed states, and the metric accumulators) and `state.json` (the epoch and
    the number of batches done in it). It is written to a temporary sibling,
    fsynced, and renamed into place as one unit, so the weights and the state
    always match. The previous backup is kept: when `fit` starts again, the
    newest backup is restored, and if it cannot be read (a damaged disk, a file
    truncated by hand) the previous one is, with a warning.

    Restoring sets the weights, the optimizer state (including `iterations`,
    from which `kc.ContrastiveModel` derives its augmentation seeds), the
    non-trainable variables and the metrics, starts `fit` at the saved epoch
    and skips the batches of that epoch that were already trained on (they
    are read from the data and dropped). A resumed run equals an uninterrupted
    one when:

    - **the data order is reproducible**: each epoch yields the same batches in
      the same order in a new process (arrays with `shuffle=False`, or a
      `tf.data` pipeline shuffled with a fixed `seed` and
      `reshuffle_each_iteration=False`; `fit(shuffle=True)` on arrays reshuffles
      differently after a restart);
    - **each epoch starts at the beginning of the data**, as Keras does when
      `steps_per_epoch` is `None`. With `steps_per_epoch` over a `.repeat()`ed
      dataset, Keras continues one iterator across epochs, while a restarted
      process starts the data from its beginning at the resumed epoch: the
      weights are then not those of an uninterrupted run;
    - the model, `compile` and `fit` arguments are the same, and `save_freq` is
      a multiple of `steps_per_execution`.

    One process writes a `backup_dir`; use a separate directory per run.

    Args:
        backup_dir: path of the directory holding the backups (created if
            needed; owned by this callback: other files there may be deleted).
        save_freq: `"epoch"` (default) to back up at the end of every epoch, or
            an int >= 1 to back up every `save_freq` batches.
        delete_checkpoint: bool, remove `backup_dir` when `fit` finishes.
            Defaults to `True`.

    Example:

    >>> import keras, numpy as np
    >>> encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = kc.ContrastiveModel(encoder=encoder)
    >>> model.compile(optimizer="adam", loss=kc.losses.NTXentLoss())
    >>> views = np.random.normal(size=(16, 2, 8)).astype("float32")
    >>> backup = kc.callbacks.BackupAndRestore("/tmp/kc_backup", save_freq=2)
    >>> history = model.fit((views[:, 0], views[:, 1]), batch_size=4, epochs=2,
    ...                     shuffle=False, callbacks=[backup], verbose=0)
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)):
            raise TypeError(f"`backup_dir` must be a path. Received: backup_dir={backup_dir!r}")
        if not os.fspath(backup_dir):
            raise ValueError(f"`backup_dir` must not be empty. Received: backup_dir={backup_dir!r}")
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(
                    "`save_freq` must be 'epoch' or an int >= 1 (a number of batches). "
                    f"Received: save_freq={save_freq!r}"
                )
            save_freq = check_int("save_freq", save_freq, min=1)
        self.backup_dir = os.path.abspath(os.fspath(backup_dir))
        self.save_freq = save_freq
        self.delete_checkpoint = check_bool("delete_checkpoint", delete_checkpoint)

    def on_train_begin(self, logs=None):
        self._epoch = 0
        self._step = 0
        self._since_save = 0
        self._skip_steps = 0
        self._metrics = None
        self._train_function = None
        backups = self._backups()
        self._next_index = _index(backups[-1]) + 1 if backups else 0
        if not backups:
            return
        state = self._restore(backups)
        self.model._initial_epoch = state["epoch"]  # the seam Keras' own BackupAndRestore uses
        self._skip_steps = state["step"]
        if self._skip_steps:
            self._skip_trained_batches()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step = self._skip_steps
        if self._metrics is not None:  # `fit` has just reset the metrics of the resumed epoch
            for variable, value in zip(self.model.metrics_variables, self._metrics, strict=True):
                variable.assign(value)
            self._metrics = None

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        if done <= self._skip_steps:
            return
        self._since_save += done - self._step
        self._step = done
        if self.save_freq != "epoch" and self._since_save >= self.save_freq:
            self._save({"epoch": self._epoch, "step": done})

    def on_epoch_end(self, epoch, logs=None):
        self._end_skipping()  # the data ran out before all skipped batches were read
        self._skip_steps = 0
        if self.save_freq == "epoch":
            self._save({"epoch": epoch + 1, "step": 0})

    def on_train_end(self, logs=None):
        self._end_skipping()
        self.model._initial_epoch = None  # a later `fit` starts where its caller says
        if self.delete_checkpoint:
            shutil.rmtree(self.backup_dir, ignore_errors=True)

    def _backups(self):
        """The complete backups, oldest first; removes what killed writes left."""
        if not os.path.isdir(self.backup_dir):
            return []
        names = os.listdir(self.backup_dir)
        for name in names:
            if name.startswith("."):  # a temporary or half-deleted backup
                shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)
        backups = [n for n in names if n.startswith(BACKUP_PREFIX) and _suffix(n).isdigit()]
        return [os.path.join(self.backup_dir, n) for n in sorted(backups, key=_index)]

    def _save(self, state):
        self._since_save = 0
        path = os.path.join(self.backup_dir, f"{BACKUP_PREFIX}{self._next_index:09d}")
        self._next_index += 1
        with atomic_directory(path) as new:
            self.model.save_weights(os.path.join(new, WEIGHTS_FILE))
            arrays = {
                **_named("variable", self.model.non_trainable_variables),
                **_named("metric", self.model.metrics_variables),
            }
            np.savez(os.path.join(new, VARIABLES_FILE), **arrays)
            with open(os.path.join(new, STATE_FILE), "w") as file:
                json.dump(state, file)
        for old in self._backups()[:-KEPT_BACKUPS]:
            _discard(old)

    def _restore(self, backups):
        """Restores the newest readable backup; returns its state."""
        errors = []
        for path in reversed(backups):
            try:
                state = self._load(path)
            except Exception as error:  # any unreadable backup: try the previous one
                errors.append(f"{path}: {type(error).__name__}: {error}")
                warnings.warn(f"Cannot restore the backup {path} ({errors[-1]}).", stacklevel=2)
                continue
            for unreadable in backups[backups.index(path) + 1 :]:
                _discard(unreadable)  # so the next backups are kept beside a readable one
            return state
        raise ValueError(
            f"No backup in `backup_dir` can be restored into this model. Received: "
            f"backup_dir={self.backup_dir!r}, errors: " + "; ".join(errors)
        )

    def _load(self, path):
        with open(os.path.join(path, STATE_FILE)) as file:
            state = json.load(file)
        state = {key: check_int(key, state[key], min=0) for key in ("epoch", "step")}
        with np.load(os.path.join(path, VARIABLES_FILE)) as data:
            variables = _arrays(data, "variable", self.model.non_trainable_variables)
            metrics = _arrays(data, "metric", self.model.metrics_variables)
        self.model.load_weights(os.path.join(path, WEIGHTS_FILE))
        for variable, value in zip(self.model.non_trainable_variables, variables, strict=True):
            variable.assign(value)
        self._metrics = metrics if state["step"] else None
        return state

    def _skip_trained_batches(self):
        """Makes the next calls of `train_function` drop the batches already trained on."""
        train_function = self.model.train_function
        per_call = self.model.steps_per_execution
        calls = -(-self._skip_steps // per_call)

        def skip(iterator):
            nonlocal calls
            for _ in range(per_call):
                next(iterator)
            calls -= 1
            if not calls:
                self._end_skipping()
            return self.model.get_metrics_result()

        self._train_function = train_function
        self.model.train_function = skip

    def _end_skipping(self):
        """Puts back the model's own `train_function`."""
        if self._train_function is not None:
            self.model.train_function = self._train_function
            self._train_function = None


def _discard(backup):
    """Deletes a backup; renamed first, so a half-deleted one never has a backup's name."""
    trash = os.path.join(os.path.dirname(backup), "." + os.path.basename(backup))
    os.rename(backup, trash)
    shutil.rmtree(trash)


def _suffix(name):
    return name[len(BACKUP_PREFIX) :]


def _index(path):
    return int(_suffix(os.path.basename(path)))


def _named(prefix, variables):
    return {f"{prefix}_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}


def _arrays(data, prefix, variables):
    """The saved values of `variables` (`prefix_0`, ...), checked against their shapes."""
    values = [data[f"{prefix}_{i}"] for i in range(len(variables))]
    shapes = [tuple(v.shape) for v in variables]
    if [v.shape for v in values] != shapes:
        raise ValueError(
            f"The backup's {prefix} shapes {[v.shape for v in values]} do not match "
            f"the model's {shapes}."
        )
    return values
