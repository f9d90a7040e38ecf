"""SimCLR's method: two views of each example, each the other's positive."""

import keras

from keras_contrastive.losses import NTXentLoss
from keras_contrastive.methods._data import check_sample_weight, flat_ids, unpack
from keras_contrastive.methods.method import Method, Prepared, input_views
from keras_contrastive.metrics import ContrastiveAccuracy


@keras.saving.register_keras_serializable(package="keras_contrastive")
class TwoView(Method):
    """Self-supervised two-view training (SimCLR, Chen et al. 2020).

    Two views of each example go through the model's `encoder` and
    `projection_head`; the loss (default `kc.losses.NTXentLoss()`, SimCLR's
    τ = 0.1) scores each view against the other view of its example among all
    the batch's views. Losses of contract `labels="ignored"`, `y_pred="pair"`
    train here (`NTXentLoss`, `InfoNCELoss`).

    Batch layout (Keras' `(x, y, sample_weight)`): `x` is `images`, from
    which the model's `augmenter` makes two views in the step, or the tuple
    `(view_1, view_2)` of views made in `tf.data`, yielded as
    `((view_1, view_2),)`. An optional `y` of `(B,)` class labels feeds the
    online probe (`probe_classes=`) only.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     method=kc.methods.TwoView(),
    ... )
    >>> model.compile(optimizer="adam", loss=kc.losses.NTXentLoss(temperature=0.1))

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of
    Visual Representations", ICML 2020.
    """

    layout = (
        "`x` = `images` (two views made by the model's `augmenter` in the step) or "
        "`(view_1, view_2)` made in tf.data, yielded as `((view_1, view_2),)`; optional "
        "(B,) labels for the online probe as `y`: `(x, labels)`"
    )
    labels = ("ignored",)
    y_pred = ("pair",)

    def default_loss(self):
        return NTXentLoss()

    def default_metrics(self):
        return [ContrastiveAccuracy()]

    def prepare(self, model, data, training, seed):
        x, y, sample_weight = unpack(data, self.layout)
        views = input_views(model, x, data, self.layout, seed)
        labels = None if y is None else flat_ids("labels", y, data, self.layout, views)
        return Prepared(views, None, check_sample_weight(sample_weight, views), labels)
