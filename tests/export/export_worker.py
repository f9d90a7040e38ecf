"""Exports two encoders in turn to one path, forever, until it is killed.

    python export_worker.py PATH EXPECTED.npz

Writes to EXPECTED.npz the embeddings of both encoders of a fixed batch of
images (`x`, `a`, `b`), then alternates `kc.export.export_encoder(a, PATH)` and
`(b, PATH)`, printing `exported` after each. Used by test_atomic_export.py: a
SIGKILL at any moment must leave PATH loading as one of the two exports.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_contrastive as kc  # noqa: E402

path, expected = sys.argv[1:]
keras.utils.set_random_seed(0)
encoders = [kc.encoders.small_cnn(input_shape=(8, 8, 3), width=4) for _ in range(2)]
x = np.random.default_rng(0).uniform(size=(3, 8, 8, 3)).astype("float32")
embeddings = [keras.ops.convert_to_numpy(encoder(x)) for encoder in encoders]
if not os.path.exists(expected):
    np.savez(expected + ".tmp.npz", x=x, a=embeddings[0], b=embeddings[1])
    os.replace(expected + ".tmp.npz", expected)
for step in range(10**6):
    kc.export.export_encoder(encoders[step % 2], path)
    print("exported", flush=True)
