"""Consumers of exported SavedModels run in fresh processes without keras_contrastive."""

import os
import subprocess
import sys
import textwrap

import pytest

# Makes `import keras_contrastive` fail in the consumer, as if it were not installed.
_NO_KERAS_CONTRASTIVE = 'import sys\nsys.modules["keras_contrastive"] = None\n'


def run_consumer(code, **env):
    """Runs `code` in a fresh Python without keras_contrastive; returns its stdout."""
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    source = _NO_KERAS_CONTRASTIVE + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, env=environ, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="session")
def consumer():
    return run_consumer
