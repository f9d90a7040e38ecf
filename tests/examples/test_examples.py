"""Each example runs end to end in its `--smoke` mode (a few steps) and prints its metrics."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
# Run once per method below: `--method` is required.
SSL_SCRIPT = "ssl_methods_digits.py"
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py") if path.name != SSL_SCRIPT)
SSL_METHODS = ("simclr", "moco", "barlow_twins", "vicreg", "byol", "simsiam", "nnclr", "dino")
NON_CONTRASTIVE = ("barlow_twins", "vicreg", "byol", "simsiam", "dino")


def run_smoke(script, tmp_path, *flags):
    """Runs `script --smoke` in a fresh process on the CPU; checks its metrics line and pictures."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke", "--output-dir", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = [line for line in result.stdout.splitlines() if line.startswith("metrics: ")]
    assert len(metrics) == 1, result.stdout[-3000:]
    values = [float(item.split("=")[1]) for item in metrics[0].split()[1:]]
    assert values and all(0.0 <= value <= 100.0 for value in values)
    assert sorted(path.name for path in tmp_path.glob("*.png")), "no picture written"
    return result.stdout


def test_every_example_is_collected():
    assert "simclr_digits.py" in SCRIPTS
    assert (EXAMPLES / SSL_SCRIPT).exists()


def test_every_ssl_method_is_tested():
    """`SSL_METHODS` is the script's `--method` choices: the keys of its `TITLES`."""
    tree = ast.parse((EXAMPLES / SSL_SCRIPT).read_text())
    (titles,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "TITLES"
    ]
    assert tuple(ast.literal_eval(titles)) == SSL_METHODS


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_smoke(script, tmp_path):
    run_smoke(script, tmp_path)


def test_clip_example_with_mined_negatives_runs_smoke(tmp_path):
    run_smoke("clip_digits.py", tmp_path, "--hard-negatives", "2", "--refresh-every", "1")


@pytest.mark.parametrize("method", SSL_METHODS)
def test_ssl_method_runs_smoke(method, tmp_path):
    stdout = run_smoke(SSL_SCRIPT, tmp_path, "--method", method)
    metric_names = stdout.splitlines()[-1].split()[1:]
    assert [item.split("=")[0] for item in metric_names] == [
        "linear_1_per_class",
        "linear_3_per_class",
        "linear_10_per_class",
        "knn_all_labels",
    ]
    # The collapse monitor: a row of the table for the methods without negatives only.
    rows = [line.split() for line in stdout.splitlines() if line.startswith("embedding_std ")]
    if method in NON_CONTRASTIVE:
        assert len(rows) == 1, stdout[-3000:]
        assert 0.0 <= float(rows[0][-1]) <= 1.0
    else:
        assert rows == [], stdout[-3000:]
