"""Exports replace an earlier export atomically: a kill at any moment leaves old or new.

The exports are written to a temporary sibling and renamed into place
(`keras_contrastive._atomic`); these tests kill real export processes and check
each state a kill can leave.
"""

import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrastive as kc
from keras_contrastive import _atomic

WORKER = os.path.join(os.path.dirname(__file__), "export_worker.py")


def l2(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def served(path, x):
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return serve(images=tf.constant(x))["embedding"].numpy()


def tiny_encoder(seed):
    keras.utils.set_random_seed(seed)
    return kc.encoders.small_cnn(input_shape=(8, 8, 3), width=2)


X = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")


@pytest.mark.slow
def test_sigkilled_exports_over_an_existing_export_leave_the_old_or_the_new(tmp_path):
    path, expected = tmp_path / "encoder", tmp_path / "expected.npz"
    chance = random.Random(0)
    for kill in range(5):
        worker = subprocess.Popen(
            [sys.executable, WORKER, path, expected],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert worker.stdout.readline() == "exported\n"  # now exporting over that export
        time.sleep(chance.uniform(0.0, 1.5))
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=60) == -signal.SIGKILL
        if not path.exists():  # killed between the two renames: the old one is kept aside
            assert [n for n in os.listdir(tmp_path) if n.startswith(".encoder.old-")], kill
            _atomic.recover(path)  # what the next export to `path` does first
        want = np.load(expected)
        got = served(path, want["x"])
        assert any(np.allclose(got, l2(want[k]), atol=1e-5) for k in "ab"), kill
    kc.export.export_encoder(tiny_encoder(1), path)  # and the next export cleans up
    assert sorted(os.listdir(tmp_path)) == ["encoder", "expected.npz"]


def test_export_over_an_export_replaces_it(tmp_path):
    path = tmp_path / "encoder"
    first, second = tiny_encoder(1), tiny_encoder(2)
    kc.export.export_encoder(first, path)
    kc.export.export_encoder(second, path)
    np.testing.assert_allclose(served(path, X), l2(second(X)), atol=1e-5)
    assert os.listdir(tmp_path) == ["encoder"]


def test_export_index_replaces_an_export(tmp_path):
    index = kc.evaluation.EmbeddingIndex()
    index.add(np.eye(3, dtype="float32"), ids=["a", "b", "c"])
    kc.export.export_index(index, tmp_path / "index", k=1)
    index.add(np.ones((1, 3), "float32"), ids=["d"])
    kc.export.export_index(index, tmp_path / "index", k=1)
    search = tf.saved_model.load(str(tmp_path / "index")).signatures["serving_default"]
    assert search(queries=tf.ones((1, 3)))["ids"].numpy().tolist() == [[b"d"]]


def test_a_directory_that_is_not_an_export_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an earlier export"):
        kc.export.export_encoder(tiny_encoder(1), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(FileExistsError, match="not a directory"):
        kc.export.export_encoder(tiny_encoder(1), tmp_path / "file")


def make_tree(path, content):
    os.mkdir(path)
    with open(os.path.join(path, "saved_model.pb"), "w") as file:
        file.write(content)


@pytest.mark.parametrize(
    ("left", "want"),
    [
        # killed while writing the new export: the partial one is dropped
        ({"encoder": "old", ".encoder.tmp-1": "partial"}, "old"),
        # killed between `encoder -> .old` and `.tmp -> encoder`: the old one comes back
        ({".encoder.old-1": "old", ".encoder.tmp-2": "new"}, "old"),
        # killed after the new one is in place, before the old one was deleted
        ({"encoder": "new", ".encoder.old-1": "old"}, "new"),
    ],
    ids=["during-write", "between-renames", "before-cleanup"],
)
def test_recover_repairs_every_state_a_kill_leaves(tmp_path, left, want):
    for name, content in left.items():
        make_tree(tmp_path / name, content)
    _atomic.recover(tmp_path / "encoder")
    assert os.listdir(tmp_path) == ["encoder"]
    assert (tmp_path / "encoder" / "saved_model.pb").read_text() == want


def test_the_next_export_recovers_then_replaces(tmp_path):
    make_tree(tmp_path / ".encoder.old-1", "old")
    make_tree(tmp_path / ".encoder.tmp-2", "partial")
    kc.export.export_encoder(tiny_encoder(1), tmp_path / "encoder")
    assert os.listdir(tmp_path) == ["encoder"]
    np.testing.assert_allclose(served(tmp_path / "encoder", X), l2(tiny_encoder(1)(X)), atol=1e-5)


def test_a_failed_write_keeps_the_old_directory(tmp_path):
    make_tree(tmp_path / "encoder", "old")
    with pytest.raises(RuntimeError), _atomic.atomic_directory(tmp_path / "encoder") as new:
        make_tree(os.path.join(new, "sub"), "partial")
        raise RuntimeError("failed")
    assert os.listdir(tmp_path) == ["encoder"]
    assert (tmp_path / "encoder" / "saved_model.pb").read_text() == "old"


def test_atomic_file_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "index.npz"
    index = kc.evaluation.EmbeddingIndex()
    index.add(np.eye(2, dtype="float32"), ids=[1, 2])
    index.save(path)
    with pytest.raises(RuntimeError), _atomic.atomic_file(path) as new:
        with open(new, "wb") as file:
            file.write(b"half")
        raise RuntimeError("killed")
    np.testing.assert_array_equal(kc.evaluation.EmbeddingIndex.load(path).ids, [1, 2])
    assert os.listdir(tmp_path) == ["index.npz"]


def test_export_to_a_tensorflow_filesystem_path_is_written_in_place():
    # `ram://` stands for gs:// and the other TensorFlow filesystems, which have no
    # atomic rename: the export is written there directly, as TensorFlow does.
    encoder = tiny_encoder(1)
    kc.export.export_encoder(encoder, "ram://kc-export/encoder")
    np.testing.assert_allclose(served("ram://kc-export/encoder", X), l2(encoder(X)), atol=1e-5)
