"""Imports TensorFlow with `TF_CPP_MIN_LOG_LEVEL` applied to its start-up logs too.

TensorFlow 2.19 to 2.21 write their start-up lines ("oneDNN custom operations
are on", "Could not find cuda drivers", "failed call to cuInit") before their
C++ logging is set up, whatever `TF_CPP_MIN_LOG_LEVEL` says
(tensorflow/tensorflow#100442). The examples import this module before
TensorFlow: it imports TensorFlow and lists its devices with the process's
standard error sent to a file, then writes back each line that the level lets
through. Log lines below the level are dropped; anything else (a Python
warning, a traceback) is written back. With the level unset or 0, nothing is
filtered.
"""

import os
import re
import sys
import tempfile

SEVERITIES = "IWEF"  # the severities TF_CPP_MIN_LOG_LEVEL = 0, 1, 2, 3 start from
# absl's `I0000 00:00:...` and TensorFlow's `2026-01-01 00:00:00.0: I ...` line starts.
LOG_LINE = re.compile(r"([IWEF])\d{4} |\S+ \S+: ([IWEF]) ")
PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"


def shown(line, level):
    """Whether `line` of the start-up output passes `TF_CPP_MIN_LOG_LEVEL=level`."""
    if line.startswith(PREAMBLE):
        return level == 0
    match = LOG_LINE.match(line)
    return match is None or SEVERITIES.index(match.group(1) or match.group(2)) >= level


def import_tensorflow():
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    level = int(level) if level.isdigit() else 0
    if level == 0 or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA's start-up lines come from here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if shown(line, level)))
            sys.stderr.flush()


import_tensorflow()
