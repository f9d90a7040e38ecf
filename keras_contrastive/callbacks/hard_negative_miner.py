"""Mined hard negatives during `fit` (ANCE): each example's nearest non-positives."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_contrastive._atomic import atomic_file
from keras_contrastive.evaluation._data import embed, input_batches
from keras_contrastive.evaluation.embedding_index import EmbeddingIndex
from keras_contrastive.methods.method import project
from keras_contrastive.ops._validation import check_int

MINED_FILE = "hard_negatives.npz"


class HardNegativeMiner(keras.callbacks.Callback):
    """Mines each training example's hardest negatives with the current model (ANCE).

    At the start of every `refresh_every`-th epoch the model embeds the
    training `queries` and the `corpus` (in inference mode), an exact
    `kc.evaluation.EmbeddingIndex` of the corpus finds each query's nearest
    neighbours, and the `num_hard_negatives` nearest that are **not**
    positives (a corpus item of the query's own id: its class, its caption
    group, itself) become its hard negatives for the epochs until the next
    refresh (Xiong et al. 2021 refresh their index asynchronously every few
    thousand steps; here, between epochs).

    The dataset of `with_hard_negatives(dataset)` reads them as it makes each
    element: element `i` (query `i`) gains its `num_hard_negatives` corpus
    items, which the model's training method embeds with its towers in the
    step, and the loss scores for that example alone (its `"hard_negatives"`
    state; see `kc.losses.CLIPLoss`, `SupConLoss`, `NTXentLoss`,
    `InfoNCELoss`). Put the shuffling and batching after it:

    ```python
    miner = kc.callbacks.HardNegativeMiner(images, group_ids, captions, caption_ids)
    train = miner.with_hard_negatives(
        tf.data.Dataset.from_tensor_slices(({"image": images, "text": texts}, group_ids))
    ).shuffle(len(images), seed=0).batch(64, drop_remainder=True)
    model.fit(train, epochs=10, callbacks=[miner])
    ```

    - Dual encoder (`image_encoder=`): queries through `model.embed_image`,
      the corpus (texts, as `tf.string` or token ids) through
      `model.embed_text`; element `x` dicts gain the entry
      `"hard_negatives"` (`kc.methods.DualEncoder`).
    - One encoder: both through the encoder and its projection head, the
      space the loss compares; elements `(x, labels)` become
      `({"inputs": x, "hard_negatives": ...}, labels)`
      (`kc.methods.Supervised`). Mining the training set itself is
      `HardNegativeMiner(x, labels, x, labels)`.

    The negatives are held in a variable that the dataset reads when it makes
    an element. Keras creates each epoch's iterator after `on_epoch_begin`
    when `steps_per_epoch` is None, so every batch of an epoch carries the
    negatives mined for it; with `steps_per_epoch` over a repeated dataset,
    the elements prefetched before a refresh carry the previous ones.

    Resuming: with `directory`, the mined negatives are written there
    (atomically) after each refresh, and a restarted `fit` (e.g. resumed
    mid-epoch by `kc.callbacks.BackupAndRestore`) reads back those of the
    latest refresh instead of mining with the restored weights, so it trains
    on the same negatives as an uninterrupted run. Without `directory`, a
    restarted `fit` mines at its first epoch.

    Args:
        queries: `(N, ...)` array of the training examples' query inputs
            (images), in the order of the dataset given to
            `with_hard_negatives`.
        query_ids: `(N,)` integer id of each query: its class, or its group.
        corpus: `(M, ...)` array of the items that can be mined: texts
            (strings or token ids) for a dual encoder, inputs of the encoder
            otherwise.
        corpus_ids: `(M,)` integer id of each corpus item; an item of the
            query's id is a positive, never mined.
        num_hard_negatives: `H >= 1`, negatives per example. Default 4.
        refresh_every: mine at epochs 0, `refresh_every`, ... Default 1.
        batch_size: inputs per embedding call. Default 256.
        directory: optional directory for the mined negatives, read back by a
            restarted `fit`. Default None.

    Example:

    >>> import keras, numpy as np
    >>> import keras_contrastive as kc
    >>> x = np.random.default_rng(0).normal(size=(12, 6)).astype("float32")
    >>> labels = np.arange(12) % 3
    >>> miner = kc.callbacks.HardNegativeMiner(x, labels, x, labels, num_hard_negatives=2)
    >>> encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    >>> miner.mine(kc.ContrastiveModel(encoder=encoder)).shape  # corpus rows
    (12, 2)

    Reference: Xiong et al., "Approximate Nearest Neighbor Negative
    Contrastive Learning for Dense Text Retrieval", ICLR 2021.
    """

    def __init__(
        self,
        queries,
        query_ids,
        corpus,
        corpus_ids,
        num_hard_negatives=4,
        refresh_every=1,
        batch_size=256,
        directory=None,
    ):
        super().__init__()
        self.queries = np.asarray(queries)
        self.corpus = np.asarray(corpus)
        self.query_ids = _ids("query_ids", query_ids, self.queries, "queries")
        self.corpus_ids = _ids("corpus_ids", corpus_ids, self.corpus, "corpus")
        self.num_hard_negatives = check_int("num_hard_negatives", num_hard_negatives, min=1)
        self.refresh_every = check_int("refresh_every", refresh_every, min=1)
        self.batch_size = check_int("batch_size", batch_size, min=1)
        self.directory = None if directory is None else os.fspath(directory)
        ids, counts = np.unique(self.corpus_ids, return_counts=True)
        positives = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        self._positives = np.array([positives.get(i, 0) for i in self.query_ids.tolist()])
        short = len(self.corpus) - self._positives < self.num_hard_negatives
        if np.any(short):
            i = int(np.argmax(short))
            raise ValueError(
                f"`num_hard_negatives`={self.num_hard_negatives} needs as many corpus "
                f"items of other ids for every query, but query {i} (id "
                f"{self.query_ids[i]}) has {len(self.corpus) - self._positives[i]}. "
                "Lower `num_hard_negatives` or give a larger corpus."
            )
        with tf.init_scope():  # read by tf.data, outside any strategy: one plain variable
            self.negatives = tf.Variable(
                tf.zeros((len(self.queries), self.num_hard_negatives), "int64"),
                trainable=False,
                name="hard_negatives",
            )
        self.mined_epoch = None  # the epoch the current negatives were mined at

    def with_hard_negatives(self, dataset):
        """`dataset` (unbatched, element `i` = query `i`), each element with its negatives.

        Elements `x` or `(x, y[, sample_weight])`: a dict `x` gains the entry
        `"hard_negatives"`, `(H, ...)` corpus items; any other `x` becomes
        `{"inputs": x, "hard_negatives": ...}`. Shuffle and batch the result.
        """
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(
                "`with_hard_negatives` takes a tf.data.Dataset of unbatched examples, "
                f"example i for query i. Received: {type(dataset).__name__}"
            )
        size = int(dataset.cardinality())
        if size >= 0 and size != len(self.queries):
            raise ValueError(
                f"The dataset must have one element per query ({len(self.queries)}), "
                f"in the order of `queries`. Received a dataset of {size} elements."
            )
        corpus = tf.constant(self.corpus)
        negatives = self.negatives

        def add(index, element):
            items = tf.gather(corpus, negatives[index])
            x, *rest = element if isinstance(element, tuple) else (element,)
            if isinstance(x, dict):
                x = {**x, "hard_negatives": items}
            else:
                x = {"inputs": x, "hard_negatives": items}
            return (x, *rest) if rest else x

        return dataset.enumerate().map(add, num_parallel_calls=tf.data.AUTOTUNE)

    def mine(self, model):
        """`(N, H)` corpus rows: each query's `H` nearest corpus items of another id."""
        queries, corpus = self._embedders(model)
        index = EmbeddingIndex()
        index.add(embed(corpus, input_batches(self.corpus, self.batch_size), "corpus"))
        embedded = embed(queries, input_batches(self.queries, self.batch_size), "queries")
        depth = min(len(self.corpus), self.num_hard_negatives + int(self._positives.max()))
        rows, _ = index.search(embedded, k=depth)
        # The first H of each row that are not positives (there are at least H).
        negative = self.corpus_ids[rows] != self.query_ids[:, None]
        order = np.argsort(~negative, axis=1, kind="stable")[:, : self.num_hard_negatives]
        return np.take_along_axis(rows, order, axis=1)

    def _embedders(self, model):
        if getattr(model, "image_encoder", None) is not None:
            return (
                lambda x: model.embed_image(tf.constant(x), training=False),
                lambda x: model.embed_text(tf.constant(x), training=False),
            )

        def one_encoder(x):
            return project(model.encoder, model.projection_head, tf.constant(x), False)[1]

        return one_encoder, one_encoder

    def on_epoch_begin(self, epoch, logs=None):
        due = epoch - epoch % self.refresh_every  # the epoch of the latest refresh
        if self.mined_epoch == due:
            return
        mined = self._read(due)
        if mined is None:
            mined = self.mine(self.model)
            self._write(due, mined)
        self.negatives.assign(mined)
        self.mined_epoch = due

    def _path(self):
        return os.path.join(self.directory, MINED_FILE)

    def _read(self, epoch):
        """The negatives written at `epoch`, or None."""
        if self.directory is None or not os.path.exists(self._path()):
            return None
        with np.load(self._path()) as saved:
            if int(saved["epoch"]) != epoch or saved["negatives"].shape != self.negatives.shape:
                return None
            return saved["negatives"]

    def _write(self, epoch, mined):
        if self.directory is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        with atomic_file(self._path()) as new, open(new, "wb") as file:
            np.savez(file, epoch=np.int64(epoch), negatives=mined)


def _ids(name, ids, items, items_name):
    ids = np.asarray(ids)
    if ids.shape != (len(items),) or ids.dtype.kind not in "iu":
        raise ValueError(
            f"`{name}` must be ({len(items)},) integers, one id per row of "
            f"`{items_name}`. Received: {name} of shape {ids.shape}, dtype {ids.dtype}"
        )
    return ids.astype("int64")
