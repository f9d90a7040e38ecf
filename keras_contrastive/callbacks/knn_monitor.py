"""Weighted kNN accuracy of the embeddings, logged during `fit`."""

import keras

from keras_contrastive.evaluation._data import embed_labeled
from keras_contrastive.evaluation.knn import knn_accuracy
from keras_contrastive.ops._validation import check_positive


class KNNMonitor(keras.callbacks.Callback):
    """Logs the kNN top-1 accuracy of the embeddings as `knn_accuracy` each epoch.

    At the end of every `every_n_epochs`-th epoch the encoder embeds
    `train_data` and `val_data` (inference mode) and `knn_accuracy` (cosine,
    `k` neighbours, votes weighted by `exp(s / τ)`) classifies the validation
    embeddings. The value is written into the epoch `logs`, so the progress
    bar, `History` and the callbacks listed after this one (TensorBoard,
    CSVLogger) see it; put `KNNMonitor` before such callbacks. It also reaches
    `model.history` when a `History` callback was listed before it. Epochs
    that are skipped have no `knn_accuracy` entry, like Keras' `val_` metrics
    with `validation_freq`.

    Args:
        train_data: labelled reference set: `(x, y)` arrays or a
            `tf.data.Dataset` of `(x, y)` batches.
        val_data: labelled query set, in the same form.
        every_n_epochs: evaluate every this many epochs. Default 1.
        k: neighbours. Default 20 (Wu et al.).
        temperature: `τ` of the vote weights. Default 0.07 (Wu et al.).
        encoder: callable mapping inputs to `(n, D)` embeddings. Default
            `None`: the model being trained (its `call`).
        batch_size: inputs per encoder call for arrays. Default 256.

    Example:

    >>> import keras, numpy as np
    >>> x = np.random.normal(size=(64, 8)).astype("float32")
    >>> y = np.arange(64) % 2
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> monitor = KNNMonitor((x, y), (x, y), k=5)
    >>> history = model.fit(x, x[:, :4], epochs=1, callbacks=[monitor], verbose=0)
    >>> "knn_accuracy" in history.history
    True

    Reference: Wu et al., "Unsupervised Feature Learning via Non-Parametric
    Instance Discrimination", CVPR 2018.
    """

    def __init__(
        self,
        train_data,
        val_data,
        every_n_epochs=1,
        k=20,
        temperature=0.07,
        encoder=None,
        batch_size=256,
    ):
        super().__init__()
        self.train_data = train_data
        self.val_data = val_data
        self.every_n_epochs = int(check_positive("every_n_epochs", every_n_epochs))
        self.k = k
        self.temperature = check_positive("temperature", temperature)
        self.encoder = encoder
        self.batch_size = batch_size

    def evaluate(self):
        """The kNN `{"top1", "top5"}` accuracy of the current encoder."""
        encoder = self.model if self.encoder is None else self.encoder
        train = embed_labeled(encoder, self.train_data, "train_data", self.batch_size)
        val = embed_labeled(encoder, self.val_data, "val_data", self.batch_size)
        return knn_accuracy(*train, *val, k=self.k, temperature=self.temperature)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        accuracy = self.evaluate()["top1"]
        logs["knn_accuracy"] = accuracy
        # A History listed before this callback has already read `logs`.
        history = getattr(self.model, "history", None)
        if isinstance(history, keras.callbacks.History) and history.epoch[-1:] == [epoch]:
            history.history.setdefault("knn_accuracy", []).append(accuracy)
