"""Per-op time of a few training steps, from a `tf.profiler` trace.

Imports only TensorFlow, so that the TF Similarity worker (tf-keras, another
virtual environment) profiles its steps with the same code as our side.
`trace(side, steps, logdir)` records `steps` steps of a timed side (anything
with `seconds_per_step(steps)`); `op_milliseconds(logdir, steps)` reads the
trace back and sums the time of the TensorFlow ops that ran, per category,
in milliseconds per step.
"""

import collections
from pathlib import Path

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

# Op types (oneDNN's "_MklNative..." names included) by category; first match wins.
CATEGORIES = (
    ("convolution", ("Conv2D",)),
    ("batch norm", ("FusedBatchNorm",)),
    ("pooling", ("MaxPool", "AvgPool", "Mean")),
    ("matmul", ("MatMul", "Einsum")),
    ("optimizer", ("ApplyAdam", "AssignVariable", "AssignAddVariable", "AssignSubVariable")),
)
OTHER = "other (element-wise, loss, augmentation)"


def category(op_type):
    for name, markers in CATEGORIES:
        if any(marker in op_type for marker in markers):
            return name
    return OTHER


def trace(side, steps, logdir):
    """Runs `side.seconds_per_step(steps)` under the profiler; returns its `(wall, CPU)`."""
    tf.profiler.experimental.start(str(logdir))
    try:
        return side.seconds_per_step(steps)
    finally:
        tf.profiler.experimental.stop()


def op_milliseconds(logdir, steps):
    """`{category: ms per step}` of the ops executed on TensorFlow's compute threads.

    Op events are named `scope/name:OpType`; their times add up across
    threads, so with inter-op parallelism the sum can exceed the wall time.
    """
    (path,) = Path(logdir).glob("plugins/profile/*/*.xplane.pb")
    space = xplane_pb2.XSpace.FromString(path.read_bytes())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # not the executor's own events
                    op_type = name.rpartition(":")[2]
                    totals[category(op_type)] += event.duration_ps / 1e9 / steps
    return dict(totals)
