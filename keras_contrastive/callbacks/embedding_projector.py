"""Embeddings and labels for TensorBoard's embedding projector."""

import os

import keras
import numpy as np

from keras_contrastive.evaluation._data import as_embeddings, embed, input_batches

CONFIG_FILE = "projector_config.pbtxt"
TENSOR_FILE = "embeddings.tsv"
METADATA_FILE = "metadata.tsv"


class EmbeddingProjector(keras.callbacks.Callback):
    """Writes embeddings of `data` for TensorBoard's projector at the end of `fit`.

    `log_dir` receives `embeddings.tsv` (one tab-separated row per example),
    `metadata.tsv` (one label per line, when `labels` are given) and
    `projector_config.pbtxt` pointing at both, which is the file TensorBoard's
    projector plugin reads from a log directory (no checkpoint needed). Run
    `tensorboard --logdir LOG_DIR` and open the "Projector" tab. `write` saves
    embeddings computed elsewhere without training.

    Args:
        log_dir: directory to write into (created if needed); use the
            `log_dir` of `keras.callbacks.TensorBoard` to see both together.
        data: inputs to embed: an array, or a `tf.data.Dataset` of input
            batches.
        labels: optional `(N,)` labels (integers or strings) for colouring.
        encoder: callable mapping inputs to `(n, D)` embeddings. Default
            `None`: the model being trained.
        batch_size: inputs per encoder call for arrays. Default 256.

    Example:

    >>> import numpy as np
    >>> projector = EmbeddingProjector("/tmp/logs", data=None)
    >>> projector.write(np.random.normal(size=(10, 4)), labels=np.arange(10) % 2)
    """

    def __init__(self, log_dir, data, labels=None, encoder=None, batch_size=256):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.data = data
        self.labels = labels
        self.encoder = encoder
        self.batch_size = batch_size

    def on_train_end(self, logs=None):
        encoder = self.model if self.encoder is None else self.encoder
        embeddings = embed(encoder, input_batches(self.data, self.batch_size), "data")
        self.write(embeddings, self.labels)

    def write(self, embeddings, labels=None):
        """Writes `(N, D)` `embeddings` and optional `(N,)` `labels` to `log_dir`."""
        embeddings = as_embeddings("embeddings", embeddings)
        os.makedirs(self.log_dir, exist_ok=True)
        np.savetxt(os.path.join(self.log_dir, TENSOR_FILE), embeddings, delimiter="\t", fmt="%.6g")
        lines = ["embeddings {", '  tensor_name: "embedding"', f'  tensor_path: "{TENSOR_FILE}"']
        if labels is not None:
            labels = _labels(labels, len(embeddings))
            with open(os.path.join(self.log_dir, METADATA_FILE), "w") as file:
                file.writelines(f"{label}\n" for label in labels)
            lines.append(f'  metadata_path: "{METADATA_FILE}"')
        with open(os.path.join(self.log_dir, CONFIG_FILE), "w") as file:
            file.write("\n".join([*lines, "}", ""]))


def _labels(labels, count):
    """One label string per embedding, without tabs or newlines."""
    labels = np.asarray(keras.ops.convert_to_numpy(labels))
    if labels.shape != (count,):
        raise ValueError(
            f"`labels` must have shape ({count},), one label per embedding. "
            f"Received: labels.shape={labels.shape}"
        )
    text = [label.decode() if isinstance(label, bytes) else str(label) for label in labels]
    return [" ".join(label.split()) for label in text]
