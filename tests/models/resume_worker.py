"""Trains a small ContrastiveModel with kc.callbacks.BackupAndRestore; optionally dies mid-epoch.

    python resume_worker.py BACKUP_DIR OUT.npz [--save-freq N] [--die-at-epoch E
        --die-at-batch K] [--report]

Writes the final weights and the per-epoch losses of this run to OUT.npz. With
`--report` it prints `batch` after every batch, so a test can SIGKILL it at a
random moment of training (with `--save-freq 1`, about 40% of it is spent
writing backups). Used by test_fault_tolerance.py: a killed and restarted run must end
with the same weights as an uninterrupted one.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_contrastive as kc  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("backup_dir")
parser.add_argument("out")
parser.add_argument("--save-freq", default="epoch")
parser.add_argument("--die-at-epoch", type=int, default=-1)
parser.add_argument("--die-at-batch", type=int, default=-1)
parser.add_argument("--report", action="store_true")
args = parser.parse_args()


class Die(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if args.report:
            print("batch", flush=True)
        if self._epoch == args.die_at_epoch and batch == args.die_at_batch:
            os._exit(3)  # as abrupt as a pre-empted machine

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


keras.utils.set_random_seed(0)
images = np.random.default_rng(0).uniform(size=(32, 8, 8, 3)).astype("float32")
encoder = keras.Sequential(
    [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(8, activation="tanh")]
)
model = kc.ContrastiveModel(
    encoder=encoder,
    projection_head=kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4, batch_norm=False),
    augmenter=kc.layers.SimCLRAugmentation(image_size=(8, 8), value_range=(0, 1)),
    seed=7,
)
model.compile(optimizer=keras.optimizers.Adam(0.01), loss=kc.losses.NTXentLoss(0.2))
save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)
history = model.fit(
    images,
    batch_size=8,
    epochs=3,
    shuffle=False,
    verbose=0,
    callbacks=[kc.callbacks.BackupAndRestore(args.backup_dir, save_freq=save_freq), Die()],
)
weights = np.concatenate([w.ravel() for w in model.get_weights()])
np.savez(args.out, weights=weights, loss=np.asarray(history.history["loss"]))
