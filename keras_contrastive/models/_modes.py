"""The two training modes of ContrastiveModel, as small strategy objects.

A mode reads a batch, runs the towers and returns a `Forward`: what the
compiled loss receives (`y_true`, `y_pred`), the representation for the
online probe, and the inputs of the contrastive accuracy. It does so in three
steps, which gradient caching runs separately: `prepare` (read, check and
augment the batch, once), `towers` (embed a batch of prepared inputs, which
may be a sub-batch) and `finish` (the `Forward` of the whole batch).
"""

import dataclasses

import tensorflow as tf
from keras import ops

from keras_contrastive import losses
from keras_contrastive.models._data import (
    check_batch_parts,
    check_same_shape,
    describe,
    read_batch,
    structure_error,
)
from keras_contrastive.models._metrics import nearest_positive_accuracy


@dataclasses.dataclass
class Forward:
    y_true: object
    y_pred: object
    sample_weight: object = None
    representation: object = None  # (B, R) for the probe
    labels: object = None  # (B,) class labels, for the probe
    accuracy: object = None  # scalar contrastive top-1 accuracy, or None


@dataclasses.dataclass
class Prepared:
    """A batch read and augmented, before the towers."""

    inputs: object  # what `towers` embeds, every tensor batch-major: (B, ...)
    y_true: object = None
    sample_weight: object = None
    labels: object = None  # (B,) class labels, for the probe


class Mode:
    """`forward` = `finish(prepare(batch), towers(inputs))`."""

    def forward(self, model, data, training, seed):
        prepared = self.prepare(model, data, training, seed)
        return self.finish(model, prepared, self.towers(model, prepared.inputs, training))


def _rank_2(name, x):
    if len(x.shape) != 2:
        raise ValueError(
            f"`{name}` must output (batch, dim) embeddings (rank 2). "
            f"Received output shape: {tuple(x.shape)}"
        )
    return x


def _labels_message(loss, received):
    return (
        f"{type(loss).__name__} needs integer class ids: labels must be (B,) (or (B, 1)). "
        f"Received: {received}. Pass `(inputs, labels)` with labels of shape (B,) (the "
        "argmax of one-hot labels), or two views with their labels as "
        "`((view_1, view_2), labels)`."
    )


def _check_second_element_is_no_view(loss, data, x, labels):
    """Refuses `(inputs, labels)` read as two views because the labels are not (B,)."""
    if getattr(loss, "labels", None) != "integer" or labels is not None:
        return
    flat_pair = isinstance(x, tuple) and not isinstance(data[0], (tuple, list))
    if flat_pair and x[0].shape != x[1].shape:
        received = f"a batch {describe(data)}, whose second element, not (B,), reads as a view"
        raise ValueError(_labels_message(loss, received))


def _flat_labels(labels):
    labels = ops.convert_to_tensor(labels)
    return ops.reshape(labels, (-1,)) if len(labels.shape) == 2 else labels


def _project(encoder, head, x, training):
    """`(representation, projection)` of `x` through one encoder and its head."""
    representation = encoder(x, training=training)
    if head is None:
        return representation, _rank_2("encoder", representation)
    return representation, _rank_2("projection_head", head(representation, training=training))


class TwoViewMode(Mode):
    """SimCLR-style views of one encoder, self-supervised or supervised.

    Batches: `images` (views made by the augmenter in the step),
    `(view_1, view_2)` (views made in tf.data), `(images, labels)` for
    SupCon/Triplet (and for the online probe), or `((x_1, x_2), q)` pairs for
    the contrastive margin loss.
    """

    name = "two-view"
    expected = "`images`, `(view_1, view_2)`, `(images, labels)` or `((x_1, x_2), similar)`"
    losses = (
        losses.NTXentLoss,
        losses.InfoNCELoss,
        losses.SupConLoss,
        losses.TripletLoss,
        losses.ContrastiveMarginLoss,
    )

    @staticmethod
    def default_loss():
        return losses.NTXentLoss()

    def prepare(self, model, data, training, seed):
        batch = read_batch(data, self.expected)
        x, labels = batch.inputs, batch.labels
        pairs = isinstance(x, tuple)
        if isinstance(x, dict) or (pairs and len(x) != 2):
            raise structure_error(self.expected, data)
        _check_second_element_is_no_view(model.loss, data, x, labels)
        if pairs:
            margin = isinstance(model.loss, losses.ContrastiveMarginLoss)
            name, second_name = ("x_1", "x_2") if margin else ("view_1", "view_2")
            (second,) = check_batch_parts(name, x[0], **{second_name: x[1]})
            reference = check_same_shape(name, x[0], second_name, second)
            views = ops.stack((reference, second), axis=1)
        else:
            name, reference = "inputs", x
            if model.augmenter is not None:
                views = model._views(x, training=True, seed=seed)
            else:
                views = ops.expand_dims(x, 1)
        labels, sample_weight = check_batch_parts(
            name, reference, labels=labels, sample_weight=batch.sample_weight
        )
        y_true = self._check_labels(model.loss, labels, pairs, views.shape[1], data)
        probe_labels = None  # the margin loss's labels are pair flags, not classes
        if labels is not None and not isinstance(model.loss, losses.ContrastiveMarginLoss):
            probe_labels = _flat_labels(labels)
        return Prepared(views, y_true, sample_weight, probe_labels)

    def towers(self, model, views, training):
        """Views `(b, V, ...)` -> `y_pred` `(b, V, D)` and the first view's `(b, R)`.

        With a momentum encoder (MoCo), view 1 goes through the query towers
        and view 2 through the key towers, in inference mode and without
        gradient.
        """
        if model.key_encoder is not None:
            representation, queries = _project(
                model.encoder, model.projection_head, views[:, 0], training
            )
            _, keys = _project(model.key_encoder, model.key_projection_head, views[:, 1], False)
            y_pred = ops.stack([queries, ops.stop_gradient(keys)], axis=1)
            return {"y_pred": y_pred, "representation": representation}
        num_views = views.shape[1]
        flat = ops.reshape(views, (-1, *ops.shape(views)[2:]))
        representation, projection = _project(model.encoder, model.projection_head, flat, training)
        return {
            "y_pred": ops.reshape(projection, (-1, num_views, projection.shape[-1])),
            "representation": ops.reshape(
                representation, (-1, num_views, representation.shape[-1])
            )[:, 0],
        }

    def finish(self, model, prepared, embedded):
        loss, y_pred = model.loss, embedded["y_pred"]
        forward = Forward(prepared.y_true, y_pred, prepared.sample_weight)
        if prepared.labels is not None:
            forward.labels = prepared.labels
            forward.representation = embedded["representation"]
        num_views = y_pred.shape[1]
        if isinstance(loss, losses.TripletLoss):
            forward.y_pred = ops.reshape(y_pred, (-1, y_pred.shape[-1]))
            forward.y_true = ops.reshape(ops.tile(forward.labels[:, None], (1, num_views)), (-1,))
        projection = ops.reshape(y_pred, (-1, y_pred.shape[-1]))
        forward.accuracy = self._accuracy(forward, loss, projection, num_views)
        return forward

    def _check_labels(self, loss, labels, pairs, num_views, data):
        if isinstance(loss, losses.ContrastiveMarginLoss):
            if not pairs or labels is None:
                raise structure_error(
                    "`((x_1, x_2), similar)` pairs with 1/0 similar flags",
                    data,
                    "ContrastiveMarginLoss scores given pairs.",
                )
            return labels
        if loss.labels == "integer":
            if labels is None:
                raise structure_error(
                    "`(images, labels)`", data, f"{type(loss).__name__} needs class labels."
                )
            if len(labels.shape) not in (1, 2) or tuple(labels.shape[1:]) not in ((), (1,)):
                raise ValueError(_labels_message(loss, f"labels.shape={tuple(labels.shape)}"))
            return _flat_labels(labels)
        if num_views != 2:
            raise structure_error(
                "two views: `(view_1, view_2)`, or images with an `augmenter`",
                data,
                f"{type(loss).__name__} needs two views of each example.",
            )
        return None

    def _accuracy(self, forward, loss, projection, num_views):
        if isinstance(loss, losses.ContrastiveMarginLoss):
            return None
        batch = ops.shape(projection)[0] // num_views
        if forward.labels is not None and loss.labels == "integer":
            ids = ops.tile(forward.labels[:, None], (1, num_views))
        elif num_views == 2:
            ids = ops.tile(ops.arange(batch)[:, None], (1, 2))
        else:
            return None
        ids = ops.reshape(ids, (-1,))
        return nearest_positive_accuracy(projection, projection, ids, ids, exclude_self=True)


class DualEncoderMode(Mode):
    """CLIP-style image and text towers scored against each other.

    Batches: `{"image": images, "text": texts}` where texts are `tf.string`
    (tokenized by the model's `text_preprocessor`) or the token inputs of the
    text encoder; optional group ids (same id = same image) as
    `{"group_id": ...}` or `(features, group_ids)`, used by
    `CLIPLoss(use_group_ids=True)` / `SigLIPLoss(use_group_ids=True)`.
    Raw strings cannot be compiled with XLA: under `jit_compile=True`
    tokenize in `tf.data` and feed token ids.
    """

    name = "dual-encoder"
    expected = '`{"image": images, "text": texts}` (optionally with "group_id")'
    losses = (losses.CLIPLoss, losses.SigLIPLoss, losses.InfoNCELoss)

    @staticmethod
    def default_loss():
        return losses.CLIPLoss()

    def prepare(self, model, data, training, seed):
        batch = read_batch(data, self.expected)
        x = batch.inputs
        if not isinstance(x, dict) or "image" not in x or "text" not in x:
            raise structure_error(self.expected, data)
        if model.jit_compile is True and text_is_strings(x["text"]):
            raise ValueError(
                "Raw tf.string texts cannot be compiled with XLA (`jit_compile=True`). "
                "Tokenize them in tf.data and feed token ids: "
                'dataset.map(lambda x: {**x, "text": model.text_preprocessor(x["text"])}).'
            )
        group_ids = batch.labels if batch.labels is not None else x.get("group_id")
        images = x["image"]
        texts = tf.nest.map_structure(
            lambda t: check_batch_parts("image", images, text=t)[0], x["text"]
        )
        group_ids, sample_weight = check_batch_parts(
            "image", images, group_ids=group_ids, sample_weight=batch.sample_weight
        )
        if model.augmenter is not None and training:
            images = model.augmenter(images, training=True, seed=seed)
        y_true = None
        if getattr(model.loss, "use_group_ids", False):
            if group_ids is None:
                raise structure_error(
                    self.expected.replace("optionally", "with"),
                    data,
                    f"{type(model.loss).__name__}(use_group_ids=True) needs group ids.",
                )
            y_true = _flat_labels(group_ids)
        return Prepared({"image": images, "text": texts}, y_true, sample_weight)

    def towers(self, model, inputs, training):
        image = model.embed_image(inputs["image"], training=training)
        text = model.embed_text(inputs["text"], training=training)
        return {"y_pred": ops.stack([image, text], axis=1)}

    def finish(self, model, prepared, embedded):
        y_pred = embedded["y_pred"]
        ids = ops.arange(ops.shape(y_pred)[0]) if prepared.y_true is None else prepared.y_true
        accuracy = nearest_positive_accuracy(
            y_pred[:, 0], y_pred[:, 1], ids, ids, exclude_self=False
        )
        return Forward(prepared.y_true, y_pred, prepared.sample_weight, accuracy=accuracy)


def text_is_strings(texts):
    return tf.is_tensor(texts) and texts.dtype == tf.string
