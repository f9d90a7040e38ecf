"""Each example runs end to end in its `--smoke` mode (a few steps) and prints its metrics."""

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py"))


def test_every_example_is_collected():
    assert "simclr_digits.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_smoke(script, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke", "--output-dir", str(tmp_path)],
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
