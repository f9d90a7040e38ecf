"""`SimCLRAugmentation` against the same layer at an earlier commit, in one process.

Loads `keras_contrastive/layers/simclr_augmentation.py` and `_image_ops.py` as
they were at `--base` (`git show`) as modules of their own beside the installed
layer, prints the largest difference between their views from one seed (0 up
to float rounding when the change keeps the views), and times
`--repeats` calls of each, interleaved (base, new, base, new, ...), on one batch
of B = 256 uint8 images, each in a `tf.function` after 2 untimed calls. Timing
the two in one process, call by call, takes out the drift between processes
that hides a change of a few milliseconds in `simclr_end_to_end.py
--augmentation`.

    python benchmarks/augmentation_vs_commit.py --base c51aee8 [--image-size 96] [--isa avx2]
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import _cpu  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAYERS = "keras_contrastive/layers"
IMPORT = "from keras_contrastive.layers import _image_ops"


def base_layer(commit, folder):
    """The `SimCLRAugmentation` class of `commit`, loaded from `folder`."""

    def source(name):
        return subprocess.run(
            ["git", "show", f"{commit}:{LAYERS}/{name}"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    layer = source("simclr_augmentation.py")
    if IMPORT not in layer:
        raise ValueError(f"{commit}'s simclr_augmentation.py does not contain {IMPORT!r}")
    (folder / "base_image_ops.py").write_text(source("_image_ops.py"))
    layer = layer.replace(IMPORT, "import base_image_ops as _image_ops")
    # Registered under another package, so that it does not replace the installed layer.
    layer = layer.replace('package="keras_contrastive"', 'package="base_commit"')
    (folder / "base_simclr_augmentation.py").write_text(layer)
    sys.path.insert(0, str(folder))  # for its `import base_image_ops`
    try:
        path = folder / "base_simclr_augmentation.py"
        spec = importlib.util.spec_from_file_location("base_simclr_augmentation", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module.SimCLRAugmentation


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--isa", choices=("native", "avx2"), default="native", help="oneDNN ISA")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    os.environ.update(_cpu.isa_env(args.isa))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from keras_contrastive.layers import SimCLRAugmentation

    with tempfile.TemporaryDirectory() as folder:
        Base = base_layer(args.base, Path(folder))
    size = args.image_size
    images = np.random.default_rng(0).integers(0, 256, (256, size, size, 3), dtype="uint8")
    images = tf.constant(images)
    calls = {
        f"base ({args.base})": tf.function(Base(size, seed=1).__call__),
        "new (working tree)": tf.function(SimCLRAugmentation(size, seed=1).__call__),
    }
    views = [call(images) for call in calls.values()]
    difference = float(tf.reduce_max(tf.abs(views[0] - views[1])))
    for call in calls.values():
        call(images)
    seconds = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(images).numpy()
            seconds[name].append(time.perf_counter() - start)
    print(f"{_cpu.cpu()}; oneDNN ISA: {args.isa}")
    print(
        f"SimCLRAugmentation({size}), one view of 256 uint8 {size}x{size} images, "
        f"{args.repeats} interleaved calls each; largest view difference {difference:.1e}"
    )
    print("| layer | median ms | min ms |")
    print("|---|---|---|")
    for name, times in seconds.items():
        print(f"| {name} | {1e3 * np.median(times):.2f} | {1e3 * np.min(times):.2f} |")
    base, new = (np.median(times) for times in seconds.values())
    print(f"new / base median time: {new / base:.2f}")


if __name__ == "__main__":
    main()
