"""A plain `pip install keras-contrastive` works: no optional package at import, fast `--help`.

Each check runs in a fresh interpreter, since this test process has every
optional package imported already.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# The packages of the extras (`examples`, `cv`, `tfds`, `hub`, `index`, `test`) and other
# optional ones.
OPTIONAL = ("sklearn", "tensorflow_datasets", "keras_cv", "keras_hub", "faiss", "matplotlib")
# The examples that answer `--help` before importing TensorFlow (every example should).
HELP_SCRIPTS = (
    "simclr_digits.py",
    "supcon_digits.py",
    "triplet_digits.py",
    "siamese_margin_digits.py",
    "ssl_methods_digits.py",
    "clip_digits.py",
    "multi_worker.py",
    "finetune_exported_encoder.py",
    "lora_digits.py",
    "finetune_keras_hub.py",
)

# Refuses to import the optional packages, as if they were not installed.
BLOCKER = """
import importlib.abc
import sys

OPTIONAL = {optional!r}


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OPTIONAL:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


def run_python(code, timeout=300, **env):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def test_import_needs_no_optional_package():
    code = (
        BLOCKER.format(optional=OPTIONAL)
        + """
import keras_contrastive as kc

loaded = sorted(name for name in sys.modules if name.split(".")[0] in OPTIONAL)
assert not loaded, loaded
kc.ContrastiveModel, kc.losses.NTXentLoss, kc.evaluation.plot_embeddings  # noqa: B018

# The functions that need an optional package name it when it is missing.
for call, package in (
    (lambda: kc.datasets.digits(), "scikit-learn"),
    (lambda: kc.datasets.tfds_images("mnist"), "keras-contrastive[tfds]"),
    (lambda: kc.evaluation.plot_embeddings([[0, 1], [1, 0], [1, 1]], [0, 1, 0], "x.png"),
     "matplotlib"),
):
    try:
        call()
    except ImportError as error:
        assert package in str(error), error
    else:
        raise AssertionError(f"no ImportError naming {package}")
print("ok")
"""
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("script", HELP_SCRIPTS)
def test_example_help_does_not_import_tensorflow(script):
    """`--help` is answered before the slow imports, with the defaults shown."""
    code = f"""
import runpy
import sys

sys.argv = [{str(EXAMPLES / script)!r}, "--help"]
sys.path.insert(0, {str(EXAMPLES)!r})
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
heavy = sorted(name for name in ("tensorflow", "keras", "keras_contrastive") if name in sys.modules)
assert not heavy, f"--help imported {{heavy}}"
import os

assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"  # the script's default
"""
    result = run_python(code, timeout=60, TF_CPP_MIN_LOG_LEVEL=None)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "usage:" in result.stdout
    assert "(default:" in result.stdout  # argparse.ArgumentDefaultsHelpFormatter


def test_examples_leave_tensorflow_logging_to_the_user():
    """`TF_CPP_MIN_LOG_LEVEL` is only a default, set before TensorFlow is imported."""
    for script in HELP_SCRIPTS:
        source = (EXAMPLES / script).read_text()
        line = 'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")'
        assert line in source, script
        first_heavy = min(
            source.find(f"\n{statement}")
            for statement in ("import keras", "import tensorflow", "import simclr_digits")
            if f"\n{statement}" in source
        )
        # `_quiet_tensorflow` imports TensorFlow, so it comes before any other heavy import.
        assert source.index(line) < source.index("\nimport _quiet_tensorflow") < first_heavy, script


def test_the_library_sets_no_tensorflow_logging():
    for path in (ROOT / "keras_contrastive").rglob("*.py"):
        source = path.read_text()
        assert "TF_CPP_MIN_LOG_LEVEL" not in source, path
        assert "get_logger().setLevel" not in source, path


def test_quiet_tensorflow_applies_the_level_to_start_up_lines():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _quiet_tensorflow as quiet  # TensorFlow is imported already: a no-op import
    finally:
        sys.path.remove(str(EXAMPLES))
    absl = "I0000 00:00:1796287923.257275   24810 cudart_stub.cc:31] Could not find cuda drivers\n"
    cuinit = "E0000 00:00:1796287928.942301   24810 cuda_platform.cc:52] failed call to cuInit\n"
    dated = "2025-09-17 14:44:05.157831: W external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] x\n"
    preamble = f"{quiet.PREAMBLE} are written to STDERR\n"
    other = "UserWarning: something Python said\n"
    lines = (absl, cuinit, dated, preamble, other)
    kept = {level: [line for line in lines if quiet.shown(line, level)] for level in range(4)}
    assert kept[0] == list(lines)
    assert kept[1] == [cuinit, dated, other]
    assert kept[2] == [cuinit, other]
    assert kept[3] == [other]
