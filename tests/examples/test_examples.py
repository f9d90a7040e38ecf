"""Each example runs end to end in its `--smoke` mode (a few steps) and prints its metrics."""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

import keras_contrastive as kc

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
# Run once per method below: `--method` is required.
SSL_SCRIPT = "ssl_methods_digits.py"
# Every script but the SSL one (tested per method) and helper modules (`_quiet_tensorflow.py`).
SCRIPTS = sorted(
    path.name
    for path in EXAMPLES.glob("*.py")
    if path.name != SSL_SCRIPT and not path.name.startswith("_")
)
SSL_METHODS = ("simclr", "moco", "barlow_twins", "vicreg", "byol", "simsiam", "nnclr", "dino")
NON_CONTRASTIVE = ("barlow_twins", "vicreg", "byol", "simsiam", "dino")
# Scripts with a test of their own below (which runs `run_smoke` too).
OWN_TESTS = {"simclr_digits.py", "multi_worker.py", "lora_digits.py"}
# The start of a TensorFlow C++ log line, and absl's note before its logging starts.
TF_LOG_LINE = r"^[IWEF]\d{4} |^\S+ \S+: [IWEF] |absl::InitializeLog"
LORA_ACCURACIES = ("learned_knn", "learned_linear_1", "retained_knn", "retained_linear_1")
# Scripts that report retrieval (`kc.evaluation.retrieval_metrics`): names in their `metrics:` line.
RETRIEVAL_METRICS = {
    "triplet_digits.py": ("r_precision", "map_at_r"),
    "supcon_digits.py": ("supcon_r_precision", "supcon_map_at_r", "cross_entropy_map_at_r"),
}


def run_smoke(script, tmp_path, *flags):
    """Runs `script --smoke` in a fresh process on the CPU; checks its output and pictures.

    `TF_CPP_MIN_LOG_LEVEL` is left unset, as a user's shell has it: the script's default applies.
    """
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke", "--output-dir", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Keras' warning for `fit(shuffle=True)` (its default) on a tf.data.Dataset.
    assert "`shuffle=True` was passed" not in result.stderr, result.stderr[-3000:]
    # No TensorFlow C++ log lines (absl's `I0000 ...`, "failed call to cuInit", ...).
    assert not re.search(TF_LOG_LINE, result.stderr, re.M), result.stderr[-3000:]
    metrics = [line for line in result.stdout.splitlines() if line.startswith("metrics: ")]
    assert len(metrics) == 1, result.stdout[-3000:]
    values = [float(item.split("=")[1]) for item in metrics[0].split()[1:]]
    assert values and all(0.0 <= value <= 100.0 for value in values)
    assert sorted(path.name for path in tmp_path.glob("*.png")), "no picture written"
    return result.stdout


def metric_names(stdout):
    """The names in the `metrics:` line of `stdout`."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("metrics: ")]
    return [item.split("=")[0] for item in line.split()[1:]]


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


@pytest.mark.parametrize("script", sorted(set(SCRIPTS) - OWN_TESTS))
def test_example_runs_smoke(script, tmp_path):
    stdout = run_smoke(script, tmp_path)
    assert set(RETRIEVAL_METRICS.get(script, ())) <= set(metric_names(stdout))
    if script in RETRIEVAL_METRICS:
        assert "MAP@R" in stdout or "\nmap_at_r " in stdout, stdout[-3000:]  # the table row


def test_demo_keeps_its_encoder_and_says_how_to_reuse_it(tmp_path):
    stdout = run_smoke("simclr_digits.py", tmp_path)
    assert (tmp_path / "encoder" / "saved_model.pb").exists()
    assert f"tf.saved_model.load({str(tmp_path / 'encoder')!r})" in stdout
    assert f"finetune_exported_encoder.py --encoder {tmp_path / 'encoder'}" in stdout
    assert "chance 1/511" in stdout and "every epoch" in stdout  # what the progress bar means
    assert "MAP@R" in stdout and "map_at_r" in metric_names(stdout)
    pictures = sorted(path.name for path in tmp_path.glob("*.png"))
    assert pictures == ["embeddings.png", "few_labels.png", "training_curves.png"]


def test_multi_worker_example_ends_quietly_in_its_own_folder(tmp_path):
    """The workers leave together: no worker looks crashed to the chief, nothing logged."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the script's default, as in a user's shell
    script = str(EXAMPLES / "multi_worker.py")
    result = subprocess.run(
        [sys.executable, script, "--smoke", "--output-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "unhealthy" not in result.stderr, result.stderr[-3000:]
    assert not re.search(TF_LOG_LINE, result.stderr, re.M), result.stderr[-3000:]
    assert [path.name for path in (tmp_path / "run").iterdir()] == ["training_curves.png"]
    assert len([line for line in result.stdout.splitlines() if line.startswith("metrics: ")]) == 1


def test_clip_example_with_mined_negatives_runs_smoke(tmp_path):
    run_smoke("clip_digits.py", tmp_path, "--hard-negatives", "2", "--refresh-every", "1")


@pytest.mark.parametrize("method", SSL_METHODS)
def test_ssl_method_runs_smoke(method, tmp_path):
    stdout = run_smoke(SSL_SCRIPT, tmp_path, "--method", method)
    assert "MAP@R" in stdout and "R-precision" in stdout  # the retrieval line
    assert metric_names(stdout) == [
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


def test_lora_example_reports_every_variant(tmp_path):
    """`lora_digits.py --smoke`: sound numbers for every variant, as the benchmark parses them."""
    results = tmp_path / "results.json"
    stdout = run_smoke("lora_digits.py", tmp_path, "--json", str(results))
    rows = {row["variant"]: row for row in json.loads(results.read_text())}
    assert list(rows) == [
        "pre-trained",
        "full",
        "full, BN frozen",
        "LoRA r=2",
        "frozen",
    ]
    for row in rows.values():
        assert all(0.0 <= row[name] <= 100.0 for name in LORA_ACCURACIES), row
    # The printed `variant:` lines are the JSON file's rows, for the benchmark to parse.
    printed = [
        json.loads(line.removeprefix("variant: "))
        for line in stdout.splitlines()
        if line.startswith("variant: ")
    ]
    assert printed == list(rows.values())

    params = {name: row["trained_params"] for name, row in rows.items()}
    assert params["frozen"] == 0
    # Full fine-tuning trains every kernel and batch-norm scale/offset; BN frozen, the kernels.
    assert params["full"] > params["full, BN frozen"] > params["LoRA r=2"] > 0
    # A rank-r update of a (k, k, c_in, c_out) kernel has r * (k * k * c_in + c_out) weights:
    # the smoke run's encoder is small_cnn(width=8) on 16x16 gray digits.
    encoder = kc.encoders.small_cnn(input_shape=(16, 16, 1), width=8)
    kernels = [
        layer.kernel.shape for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)
    ]
    assert params["LoRA r=2"] == sum(2 * (k[0] * k[1] * k[2] + k[3]) for k in kernels)
    for name in ("full", "LoRA r=2", "frozen"):
        assert rows[name]["step_ms"] > 0.0
    # A frozen encoder is the pre-trained one: the same representations, the same accuracies.
    for metric in LORA_ACCURACIES:
        assert rows["frozen"][metric] == rows["pre-trained"][metric]
    # Merging the factors into the kernels keeps the representations (float32 round-off).
    assert rows["LoRA r=2"]["merge_max_abs_diff"] < 1e-3
    assert (tmp_path / "forgetting.png").stat().st_size > 0
