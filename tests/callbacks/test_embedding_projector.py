"""EmbeddingProjector writes the files TensorBoard's projector reads."""

import keras
import numpy as np
import pytest

from keras_contrastive.callbacks import EmbeddingProjector


def read_config(log_dir):
    text = (log_dir / "projector_config.pbtxt").read_text()
    return dict(line.strip().split(": ") for line in text.splitlines() if ":" in line), text


def test_writes_embeddings_of_the_trained_model(tmp_path, rng):
    x = rng.normal(size=(12, 6)).astype("float32")
    labels = np.arange(12) % 3
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss="mse")
    projector = EmbeddingProjector(tmp_path / "logs", x, labels, batch_size=5)
    model.fit(x, x[:, :4], epochs=1, callbacks=[projector], verbose=0)
    log_dir = tmp_path / "logs"
    written = np.loadtxt(log_dir / "embeddings.tsv", delimiter="\t")
    np.testing.assert_allclose(written, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert (log_dir / "metadata.tsv").read_text().split("\n")[:-1] == [
        str(i % 3) for i in range(12)
    ]
    fields, text = read_config(log_dir)
    assert text.startswith("embeddings {") and text.rstrip().endswith("}")
    assert fields == {
        "tensor_name": '"embedding"',
        "tensor_path": '"embeddings.tsv"',
        "metadata_path": '"metadata.tsv"',
    }


def test_write_string_labels_and_no_labels(tmp_path):
    projector = EmbeddingProjector(tmp_path, data=None)
    projector.write(np.eye(3), labels=np.array(["a cat", "tab\there", b"bytes"]))
    assert (tmp_path / "metadata.tsv").read_text() == "a cat\ntab here\nbytes\n"
    other = tmp_path / "other"
    EmbeddingProjector(other, data=None).write(np.eye(2))
    assert "metadata_path" not in read_config(other)[0]
    assert not (other / "metadata.tsv").exists()


def test_bad_input_names_the_argument(tmp_path):
    projector = EmbeddingProjector(tmp_path, data=None)
    with pytest.raises(ValueError, match="`labels`"):
        projector.write(np.eye(3), labels=[0, 1])
    with pytest.raises(ValueError, match="`embeddings`"):
        projector.write(np.full((2, 2), np.nan))
