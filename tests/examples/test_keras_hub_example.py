"""`examples/finetune_keras_hub.py --smoke` runs from a preset on disk, trains LoRA and exports.

(`test_examples.py` runs every example with its defaults; this runs the `--preset` path
with SimCLR, on a preset saved here, so nothing is downloaded.)
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

keras_hub = pytest.importorskip("keras_hub")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "finetune_keras_hub.py"


def test_the_example_fine_tunes_a_preset_on_disk_with_lora_and_exports_it(tmp_path):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(16, 16, 3),
    )
    backbone.save_to_preset(str(tmp_path / "preset"))
    output = tmp_path / "output"
    flags = ["--preset", str(tmp_path / "preset"), "--image-size", "16", "--method", "simclr"]
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--smoke", "--output-dir", str(output), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stdout = result.stdout
    assert f"({tmp_path / 'preset'})" in stdout  # the backbone came from the preset

    (metrics,) = [line for line in stdout.splitlines() if line.startswith("metrics: ")]
    values = dict(item.split("=") for item in metrics.split()[1:])
    stages = ("before", "lora", "saved_model")
    assert list(values) == [f"{s}_knn_{k}" for s in stages for k in (20, 1)]
    assert all(0.0 <= float(value) <= 100.0 for value in values.values())
    # The SavedModel (LoRA merged) serves what the adapted encoder computes.
    assert values["saved_model_knn_20"] == values["lora_knn_20"]
    (difference,) = re.findall(r"max \|served - model\| = (\S+)\)", stdout)
    assert float(difference) < 1e-4

    assert (output / "lora_factors.npz").is_file()
    assert (output / "encoder" / "saved_model.pb").is_file()
    assert (output / "embeddings.png").is_file()
