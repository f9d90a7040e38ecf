"""SimSiam's method: a predictor regresses each view's projection onto the other's."""

import keras
from keras import ops

from keras_contrastive.losses.prediction_losses import SimSiamLoss
from keras_contrastive.methods._predictor import check_predictor, predictor_mlp, projection_dim
from keras_contrastive.methods.method import Step, project
from keras_contrastive.methods.two_view import TwoView
from keras_contrastive.metrics.embedding_std import EmbeddingStd
from keras_contrastive.ops.similarity import compute_dtype, l2_normalize

# PyTorch's BatchNorm1d defaults (momentum 0.1 is Keras' 0.9), as both papers' code uses them.


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SimSiam(TwoView):
    """SimSiam: two views, a predictor, and a stop-gradient on the target (no negatives).

    Each view `x_v` goes through the model's `encoder` and `projection_head`
    (its projection `z_v`, each view a batch of its own, as in the paper's
    code: a BatchNormalization normalizes per view) and through `predictor`,
    the method's own MLP (its prediction `p_v`). The loss (default
    `kc.losses.SimSiamLoss()`, `D = −cos`) is
    `L = ½ D(p1, sg(z2)) + ½ D(p2, sg(z1))`: the gradient reaches the
    predictions only. The predictor is saved with the model and not exported
    (`kc.export.export_encoder` exports the encoder).

    What the loss receives: one row per example, `y_pred` of `(B, 2, 2D)`,
    row `(p̂1 ‖ p̂2, ẑ2 ‖ ẑ1)`: the concatenated L2-normalized predictions
    and the concatenated normalized targets of the other views. Each half
    has unit norm, so the cosine of a row is `½ (cos(p1, z2) + cos(p2, z1))`,
    the mean of the two directions, with their gradient; one row per example
    keeps sample weights, the reduction and the replica shares per example,
    as in every method. (A projection that is exactly zero, which has no
    direction, would leave its half zero and change the row's norm.) Any
    loss of contract `labels="ignored"`, `y_pred="pair"` that scores
    `(prediction, target)` rows trains here; targets arrive under
    `stop_gradient`. The metrics receive the online projections `(B, 2, D)`;
    the default metric is `kc.metrics.EmbeddingStd()` (`embedding_std`), the
    collapse monitor of the paper's Figure 2: about `1 / sqrt(D)` when
    healthy, 0 at collapse.

    The batch layout is `TwoView`'s: `images` with the model's `augmenter`,
    or `((view_1, view_2),)` made in tf.data.

    Args:
        predictor: `None` (default), or a layer `(B, D) -> (B, D)` on the
            projections. `None` builds SimSiam's bottleneck MLP from the
            projection dim `D`: `Dense(max(D // 4, 8), no bias) ->
            BatchNormalization -> ReLU -> Dense(D)`, with no BatchNormalization
            on the output (the paper reports it unstable; SimSiam: 2048 ->
            512 -> 2048). Serialized with the method.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     method=kc.methods.SimSiam(),
    ... )
    >>> model.compile(optimizer="sgd")
    >>> model.method.predictor.output_shape
    (None, 16)

    Reference: Chen & He, "Exploring Simple Siamese Representation
    Learning", CVPR 2021.
    """

    def __init__(self, predictor=None, **kwargs):
        super().__init__(**kwargs)
        if predictor is not None and not isinstance(predictor, keras.layers.Layer):
            raise TypeError(
                "`predictor` must be None or a keras.layers.Layer mapping (B, D) "
                f"projections to (B, D). Received: predictor={predictor!r}"
            )
        self.predictor = predictor

    def attach(self, model):
        dim = projection_dim(model, type(self).__name__, self.predictor)
        if self.predictor is None:
            self.predictor = predictor_mlp(dim, self.predictor_hidden_dim(dim), name="predictor")
        elif not self.predictor.built:
            self.predictor.build((None, dim))
        check_predictor(self.predictor, dim)

    def predictor_hidden_dim(self, dim):
        """The hidden width of the default predictor on `dim`-d projections: `max(dim // 4, 8)`."""
        return max(dim // 4, 8)

    def default_loss(self):
        return SimSiamLoss()

    def default_metrics(self):
        return [EmbeddingStd()]

    def towers(self, model, views, training):
        """Projections `(B, 2, D)` and predictions (the `"embeddings"`) of the two views."""
        representation, first = project(model.encoder, model.projection_head, views[:, 0], training)
        _, second = project(model.encoder, model.projection_head, views[:, 1], training)
        predictions = [self.predictor(z, training=training) for z in (first, second)]
        return {
            "embeddings": ops.stack(predictions, axis=1),
            "projections": ops.stack([first, second], axis=1),
            "representation": representation,
        }

    def targets(self, embedded):
        """The `(B, 2, D)` targets of the two views: SimSiam's own projections."""
        return embedded["projections"]

    def finish(self, model, prepared, embedded):
        rows = symmetric_rows(embedded["embeddings"], ops.stop_gradient(self.targets(embedded)))
        return Step(
            None,
            rows,
            embedded["projections"],
            prepared.sample_weight,
            prepared.labels,
            embedded["representation"] if prepared.labels is not None else None,
        )

    def get_config(self):
        predictor = self.predictor
        if predictor is not None:
            predictor = keras.saving.serialize_keras_object(predictor)
        return {**super().get_config(), "predictor": predictor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("predictor") is not None:
            config["predictor"] = keras.saving.deserialize_keras_object(config["predictor"])
        return cls(**config)


def symmetric_rows(predictions, targets):
    """`(B, 2, 2D)` rows `(p̂1 ‖ p̂2, ẑ2 ‖ ẑ1)` of `(B, 2, D)` predictions and targets.

    Each half is L2-normalized (in float32 for half precision), so that the
    cosine of a row is the mean of the cosines `cos(p1, z2)` and `cos(p2, z1)`.
    """
    predictions = l2_normalize(ops.cast(predictions, compute_dtype(predictions)))
    targets = l2_normalize(ops.cast(targets, compute_dtype(targets)))
    width = 2 * predictions.shape[-1]
    first = ops.reshape(predictions, (-1, width))
    second = ops.reshape(ops.flip(targets, axis=1), (-1, width))
    return ops.stack([first, ops.cast(second, first.dtype)], axis=1)


def online_towers(model):
    """The model's `encoder` and, when it has one, `projection_head`."""
    return [tower for tower in (model.encoder, model.projection_head) if tower is not None]
