"""Images/s of SimCLRAugmentation against the closest keras-cv 0.9 pipeline.

Both pipelines run on the same uint8 batches (256 images; 32x32 -> 32x32 and
256x256 -> 224x224), side by side in one process, in two places:
- `tf.data`: `Dataset.map(augment, num_parallel_calls=AUTOTUNE)` on batches;
- model step: the augmentation inside a `tf.function` (as a train step runs it),
  and ours also with `jit_compile=True` (keras-cv's per-image loops do not compile
  with XLA).
The keras-cv pipeline: RandomFlip + RandomCropAndResize + RandomApply(RandomColorJitter,
0.8) + RandomApply(Grayscale, 0.2) + RandomApply(RandomGaussianBlur, 0.5), with
SimCLR's factors and kernel size.

Run: python benchmarks/augmentation.py [--quick]
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_cv  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_contrastive.layers import SimCLRAugmentation  # noqa: E402

BATCH = 256
CASES = ((32, 32), (224, 256))  # (output side, input side)


def keras_cv_pipeline(size):
    layers = keras_cv.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomCropAndResize(
                (size, size), crop_area_factor=(0.08, 1.0), aspect_ratio_factor=(3 / 4, 4 / 3)
            ),
            layers.RandomApply(layers.RandomColorJitter((0, 255), 0.8, 0.8, 0.8, 0.2), 0.8),
            layers.RandomApply(layers.Grayscale(output_channels=3), 0.2),
            layers.RandomApply(
                layers.RandomGaussianBlur(2 * (size // 20) + 1, factor=(0.1, 2.0)), 0.5
            ),
        ]
    )


def images_per_second(run, batches):
    run()  # trace / compile and warm up
    start = time.perf_counter()
    for _ in range(batches):
        run()
    return batches * BATCH / (time.perf_counter() - start)


def tf_data_run(augment, images, batches):
    ds = tf.data.Dataset.from_tensors(images).repeat(batches)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def run():
        for _ in ds:
            pass

    run()
    start = time.perf_counter()
    run()
    return batches * BATCH / (time.perf_counter() - start)


def measure(size, side, batches):
    """Yields (where, ours img/s, keras-cv img/s) for one image size."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (BATCH, side, side, 3), dtype="uint8"))
    ours = SimCLRAugmentation(size, seed=0)
    theirs = keras_cv_pipeline(size)

    def ours_fn(x):
        return ours(x, training=True)

    def theirs_fn(x):
        return theirs(tf.cast(x, "float32"), training=True)

    yield "tf.data AUTOTUNE", *(tf_data_run(f, images, batches) for f in (ours_fn, theirs_fn))
    step = {
        "ours": tf.function(ours_fn),
        "ours_xla": tf.function(ours_fn, jit_compile=True),
        "theirs": tf.function(theirs_fn),
    }
    speed = {k: images_per_second(lambda f=f: f(images), batches) for k, f in step.items()}
    yield "model step tf.function", speed["ours"], speed["theirs"]
    yield "model step XLA (ours)", speed["ours_xla"], speed["theirs"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 batches per measure")
    batches = 2 if parser.parse_args().quick else 4
    print(f"batch {BATCH}, {batches} timed batches per measure, {os.cpu_count()} CPUs")
    print(f"{'size':>5} {'where':<22} {'ours img/s':>11} {'keras-cv':>9} {'ratio':>6}")
    for size, side in CASES:
        for where, ours, theirs in measure(size, side, batches):
            print(f"{size:>5} {where:<22} {ours:>11.0f} {theirs:>9.0f} {ours / theirs:>5.1f}x")


if __name__ == "__main__":
    main()
