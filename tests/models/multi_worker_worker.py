"""`fit` and `evaluate` on fixed views, in one process or as one worker of several.

    python multi_worker_worker.py OUT.npy [--ports P0,P1 --index I]

With `--ports`, this process is worker `I` of a `MultiWorkerMirroredStrategy`
cluster on 127.0.0.1 (one CPU replica per worker); without, it trains on one
device. Used by test_multi_worker.py: every worker must end with the weights
of the single process trained on the same global batches.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--ports", default="")
parser.add_argument("--index", type=int, default=0)
args = parser.parse_args()
if args.ports:
    workers = [f"127.0.0.1:{port}" for port in args.ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": args.index}}
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_contrastive as kc  # noqa: E402

if args.ports:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")

# Views made up front, so that every set-up sees the same global batches.
rng = np.random.default_rng(0)
images = rng.uniform(size=(32, 6, 6, 3)).astype("float32")
views = (images, images + rng.normal(scale=0.1, size=images.shape).astype("float32"))
# The two views are one input `x`: the dataset yields `((view_1, view_2),)`.
dataset = tf.data.Dataset.from_tensor_slices((views,)).batch(8, drop_remainder=True)
options = tf.data.Options()
# Each global batch of 8 is split into per-replica batches of 4, dealt to the workers.
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = dataset.with_options(options)

keras.utils.set_random_seed(0)
with strategy.scope():
    encoder = keras.Sequential(
        [keras.Input((6, 6, 3)), keras.layers.Flatten(), keras.layers.Dense(8, activation="tanh")]
    )
    model = kc.ContrastiveModel(
        encoder=encoder,
        projection_head=kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4, batch_norm=False),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=kc.losses.NTXentLoss(0.2))
history = model.fit(dataset, epochs=2, verbose=0)
evaluation = model.evaluate(dataset, verbose=0, return_dict=True)
np.save(args.out, np.concatenate([w.ravel() for w in model.get_weights()]))
losses = [*history.history["loss"], evaluation["loss"]]
np.save(args.out.replace(".npy", "_loss.npy"), np.array(losses))
