"""Supervised contrastive and metric learning: class labels name the positives."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.losses import SupConLoss, contract_of
from keras_contrastive.methods._data import check_sample_weight, flat_ids, structure_error, unpack
from keras_contrastive.methods.method import (
    Method,
    Prepared,
    Step,
    check_takes_hard_negatives,
    embed_views,
    input_views,
    per_example,
    project,
    with_state,
)
from keras_contrastive.metrics import ContrastiveAccuracy
from keras_contrastive.ops._validation import check_integer_labels, check_same_batch


@keras.saving.register_keras_serializable(package="keras_contrastive")
class Supervised(Method):
    """Supervised training: examples of one class are positives (SupCon, triplets).

    Any loss of contract `labels="integer"` trains here: with
    `y_pred="views"` it receives `(B, V, D)` (`kc.losses.SupConLoss`, the
    default, Khosla et al. 2020); with `y_pred="single"` it receives
    `(B·V, D)` and the labels repeated per view (`kc.losses.TripletLoss`, and
    Keras' own metric-learning losses such as `keras.losses.Circle()`, the
    contract `kc.losses.contract_of` gives a Keras loss).

    Losses of contract `y_pred="pair"` that take group ids train here too
    (`NTXentLoss(use_group_ids=True)`: SimCLR with the other examples of a
    class left out of an anchor's negatives), on two views.

    Batch layout: `(images, labels)` with `(B,)` integer class ids; the
    model's `augmenter`, if any, makes two views of each image in the step
    (without one, each image is one view); or `((view_1, view_2), labels)`.
    The labels also feed the online probe (`probe_classes=`).

    Mined hard negatives: `({"inputs": images, "hard_negatives": negatives},
    labels)`, with `(B, H, ...)` negatives (H inputs of other classes, as
    `kc.callbacks.HardNegativeMiner.with_hard_negatives` adds them) and
    `"inputs"` either form above. Each negative is one view (augmented by the
    model's `augmenter`, if any) through the encoder and head, and the loss
    receives their `(B, H, D)` embeddings as its `"hard_negatives"` state
    (`SupConLoss`, and `NTXentLoss` / `InfoNCELoss` with group ids, take it).

    Example:

    >>> import keras
    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     method=kc.methods.Supervised(),
    ... )
    >>> model.compile(optimizer="adam", loss=keras.losses.Circle())

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """

    layout = (
        "`(images, labels)` (two views made by the model's `augmenter`, if it has one) "
        "or `((view_1, view_2), labels)`, with (B,) integer class labels; or either "
        'input as `{"inputs": ..., "hard_negatives": (B, H, ...)}`'
    )
    labels = ("integer",)
    y_pred = ("views", "single", "pair")

    def default_loss(self):
        return SupConLoss()

    def default_metrics(self):
        return [ContrastiveAccuracy()]

    def prepare(self, model, data, training, seed):
        x, y, sample_weight = unpack(data, self.layout)
        if y is None:
            raise structure_error(self.layout, data, "Supervised training needs class labels.")
        negatives = None
        if isinstance(x, dict):
            if set(x) != {"inputs", "hard_negatives"}:
                raise structure_error(self.layout, data)
            check_takes_hard_negatives(model.loss)
            x, negatives = x["inputs"], x["hard_negatives"]
        views = input_views(model, x, data, self.layout, seed, min_views=1)
        if contract_of(model.loss).y_pred == "pair" and views.shape[1] != 2:
            raise structure_error(
                self.layout,
                data,
                f"{type(model.loss).__name__} takes two views of each example: give the "
                "model an `augmenter`, or yield `((view_1, view_2), labels)`.",
            )
        labels = flat_ids("labels", y, data, self.layout, views)
        check_integer_labels("labels", labels)
        inputs = views
        if negatives is not None:
            negatives = ops.convert_to_tensor(negatives)
            negatives = check_same_batch("hard_negatives", negatives, "x", views)
            inputs = {"views": views, "hard_negatives": _one_view(model, negatives, seed)}
        return Prepared(inputs, labels, check_sample_weight(sample_weight, views), labels)

    def towers(self, model, inputs, training):
        """`(B, V + H, D)` embeddings: each example's V views, then its H hard negatives."""
        if not isinstance(inputs, dict):
            return embed_views(model, inputs, training)
        embedded = embed_views(model, inputs["views"], training)
        negatives = per_example(
            lambda x, training: project(model.encoder, model.projection_head, x, training)[1],
            inputs["hard_negatives"],
            training,
        )
        embedded["embeddings"] = ops.concatenate([embedded["embeddings"], negatives], axis=1)
        return embedded

    def finish(self, model, prepared, embedded):
        embeddings, y_true = embedded["embeddings"], prepared.y_true
        sample_weight = prepared.sample_weight
        hard_negatives = None
        if isinstance(prepared.inputs, dict):
            num_views = prepared.inputs["views"].shape[1]
            embeddings, hard_negatives = embeddings[:, :num_views], embeddings[:, num_views:]
        if contract_of(model.loss).y_pred == "single":  # one row per view, its label repeated
            num_views = embeddings.shape[1]
            embeddings = ops.reshape(embeddings, (-1, embeddings.shape[-1]))
            y_true = _repeat(y_true, num_views)
            sample_weight = None if sample_weight is None else _repeat(sample_weight, num_views)
        return Step(
            y_true,
            with_state(embeddings, hard_negatives=hard_negatives),
            embeddings,
            sample_weight,
            prepared.labels,
            embedded["representation"],
        )


def _one_view(model, negatives, seed):
    """The `(B, H, ...)` negatives, each augmented once by the model's `augmenter`, if any."""
    if model.augmenter is None:
        return negatives
    flat = ops.reshape(negatives, (-1, *ops.shape(negatives)[2:]))
    if seed is None:  # an augmenter without `seed=` (see `model.step_seed`)
        flat = model.augmenter(flat, training=True)
    else:
        seed = tf.random.experimental.stateless_fold_in(seed, 1)
        flat = model.augmenter(flat, training=True, seed=seed)
    return ops.reshape(flat, (ops.shape(negatives)[0], negatives.shape[1], *flat.shape[1:]))


def _repeat(x, times):
    """`(B,)` -> `(B·times,)`, each entry `times` times in a row (views are example-major)."""
    return ops.reshape(ops.tile(ops.expand_dims(x, 1), (1, times)), (-1,))
