"""Supervised contrastive and metric learning: class labels name the positives."""

import keras
from keras import ops

from keras_contrastive.losses import SupConLoss, contract_of
from keras_contrastive.methods._data import check_sample_weight, flat_ids, structure_error, unpack
from keras_contrastive.methods.method import Method, Prepared, Step, input_views
from keras_contrastive.metrics import ContrastiveAccuracy
from keras_contrastive.ops._validation import check_integer_labels


@keras.saving.register_keras_serializable(package="keras_contrastive")
class Supervised(Method):
    """Supervised training: examples of one class are positives (SupCon, triplets).

    Any loss of contract `labels="integer"` trains here: with
    `y_pred="views"` it receives `(B, V, D)` (`kc.losses.SupConLoss`, the
    default, Khosla et al. 2020); with `y_pred="single"` it receives
    `(B·V, D)` and the labels repeated per view (`kc.losses.TripletLoss`, and
    Keras' own metric-learning losses such as `keras.losses.Circle()`, the
    contract `kc.losses.contract_of` gives a Keras loss).

    Batch layout: `(images, labels)` with `(B,)` integer class ids; the
    model's `augmenter`, if any, makes two views of each image in the step
    (without one, each image is one view); or `((view_1, view_2), labels)`.
    The labels also feed the online probe (`probe_classes=`).

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
        "or `((view_1, view_2), labels)`, with (B,) integer class labels"
    )
    labels = ("integer",)
    y_pred = ("views", "single")

    def default_loss(self):
        return SupConLoss()

    def default_metrics(self):
        return [ContrastiveAccuracy()]

    def prepare(self, model, data, training, seed):
        x, y, sample_weight = unpack(data, self.layout)
        if y is None:
            raise structure_error(self.layout, data, "Supervised training needs class labels.")
        views = input_views(model, x, data, self.layout, seed, min_views=1)
        labels = flat_ids("labels", y, data, self.layout, views)
        check_integer_labels("labels", labels)
        return Prepared(views, labels, check_sample_weight(sample_weight, views), labels)

    def finish(self, model, prepared, embedded):
        embeddings, y_true = embedded["embeddings"], prepared.y_true
        sample_weight = prepared.sample_weight
        if contract_of(model.loss).y_pred == "single":  # one row per view, its label repeated
            num_views = embeddings.shape[1]
            embeddings = ops.reshape(embeddings, (-1, embeddings.shape[-1]))
            y_true = _repeat(y_true, num_views)
            sample_weight = None if sample_weight is None else _repeat(sample_weight, num_views)
        return Step(
            y_true,
            embeddings,
            embeddings,
            sample_weight,
            prepared.labels,
            embedded["representation"],
        )


def _repeat(x, times):
    """`(B,)` -> `(B·times,)`, each entry `times` times in a row (views are example-major)."""
    return ops.reshape(ops.tile(ops.expand_dims(x, 1), (1, times)), (-1,))
