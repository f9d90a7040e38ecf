"""NNCLR's method: the positive of each view is its nearest neighbour in a support set."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.layers import KeyQueue
from keras_contrastive.losses.nnclr_loss import NNCLRLoss
from keras_contrastive.methods._predictor import check_predictor, predictor_mlp, projection_dim
from keras_contrastive.methods.method import Step, embed_views
from keras_contrastive.methods.two_view import TwoView
from keras_contrastive.metrics import ContrastiveAccuracy
from keras_contrastive.ops import _validation as v
from keras_contrastive.ops.similarity import compute_dtype, l2_normalize

# PyTorch's BatchNorm1d defaults (momentum 0.1 is Keras' 0.9), as the reference code uses them.


@keras.saving.register_keras_serializable(package="keras_contrastive")
class NNCLR(TwoView):
    """Nearest-Neighbour Contrastive Learning (NNCLR): positives from a support set.

    Two views of each example go through the model's `encoder` and
    `projection_head` (as one batch of 2B, as in `TwoView`): projections
    `z1`, `z2`; and through `predictor`, the method's own MLP: predictions
    `p1`, `p2` (`p = z` without a predictor). The positive of each view is
    `NN(z, Q)`, the nearest neighbour of its projection in the support set
    `Q` by cosine similarity (the paper's `argmin ‖z − q‖` on unit vectors),
    found without gradient: the gradient reaches the towers through the other
    view's prediction. The loss (default `kc.losses.NNCLRLoss()`, τ = 0.1) is
    the paper's symmetrized InfoNCE
    `L = ½ [InfoNCE(NN(z1), p2) + InfoNCE(NN(z2), p1)]`: each neighbour is a
    query whose softmax runs over the other view's in-batch predictions (of
    all replicas under a distribution strategy), the two directions are
    separate terms and their mean is taken (Algorithm 1; solo-learn's
    NNCLR). lightly's example instead feeds `(NN(z1), p2)` to a SimCLR
    NT-Xent, whose anchors include the predictions and whose negatives mix
    both sides: not this loss.

    The support set, `support_set`, is a `kc.layers.KeyQueue` of the
    `queue_size` most recent L2-normalized projections of the first view
    (the paper's `update_queue(Q, z1)`), written after each optimizer step:
    under a distribution strategy, the projections of all replicas, so every
    replica holds the same set. Neighbours are looked up before the write,
    among past batches only; `evaluate` leaves the set unchanged. The set
    starts as random unit vectors (as MoCo's queue): until `queue_size`
    projections have been written (`queue_size / global batch` steps), some
    neighbours are those random vectors: positives of no meaning, which only
    the in-batch negatives make useful. The lookup scores each view against the
    whole set: `B × queue_size` similarities per view. Predictor and support
    set are saved with the model and not exported
    (`kc.export.export_encoder` exports the encoder).

    What the loss receives: `y_pred` of `(B, 4, D)`, rows
    `(NN(z1), p2, NN(z2), p1)`, for a loss of contract `labels="ignored"`,
    `y_pred="views"` (`kc.losses.NNCLRLoss`). The metrics receive the
    projections `(B, 2, D)`; the default metric is
    `kc.metrics.ContrastiveAccuracy()` (each view's other view among the
    batch's). The batch layout is `TwoView`'s: `images` with the model's
    `augmenter`, or `((view_1, view_2),)` made in tf.data.

    Args:
        queue_size: int >= 1, the size of the support set. NNCLR: 98,304.
        predictor: `"mlp"` (default, as the paper), `None` (no predictor:
            `p = z`), or a layer `(B, D) -> (B, D)` on the projections,
            built when the model is. `"mlp"` builds the paper's prediction
            MLP from the projection dim `D`: `Dense(16·D, no bias) ->
            BatchNormalization -> ReLU -> Dense(D)` (4096 hidden units for
            `D = 256`). Serialized with the method.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     method=kc.methods.NNCLR(queue_size=4096),
    ... )
    >>> model.compile(optimizer="sgd")
    >>> model.method.support_set.keys.shape, model.method.predictor.output_shape
    (TensorShape([4096, 16]), (None, 16))

    Reference: Dwibedi et al., "With a Little Help from My Friends:
    Nearest-Neighbor Contrastive Learning of Visual Representations",
    ICCV 2021 (Eq. 2, Algorithm 1; τ = 0.1, a support set of 98,304, the
    prediction MLP).
    """

    labels = ("ignored",)
    y_pred = ("views",)

    def __init__(self, queue_size=98304, predictor="mlp", **kwargs):
        super().__init__(**kwargs)
        self.queue_size = v.check_int("queue_size", queue_size, min=1)
        if isinstance(predictor, str):
            v.check_choice("predictor", predictor, ("mlp",))
        elif predictor is not None and not isinstance(predictor, keras.layers.Layer):
            raise TypeError(
                '`predictor` must be "mlp", None or a keras.layers.Layer mapping (B, D) '
                f"projections to (B, D). Received: predictor={predictor!r}"
            )
        self.predictor = predictor
        self.support_set = None

    def attach(self, model):
        dim = projection_dim(model, "NNCLR")
        if isinstance(self.predictor, str):
            self.predictor = predictor_mlp(dim, 16 * dim, name="predictor")
        elif self.predictor is not None:
            if not self.predictor.built:
                self.predictor.build((None, dim))
            check_predictor(self.predictor, dim)
        self.support_set = KeyQueue(self.queue_size, dim, seed=model.seed, name="support_set")

    def default_loss(self):
        return NNCLRLoss(temperature=0.1)

    def default_metrics(self):
        return [ContrastiveAccuracy()]

    def loss_hint(self, model):
        return " NNCLR's loss is kc.losses.NNCLRLoss (the default)."

    def towers(self, model, views, training):
        """Predictions (the `"embeddings"`) and projections, `(B, 2, D)` each, of the two views."""
        embedded = embed_views(model, views, training)
        projections = embedded["embeddings"]
        predictions = projections
        if self.predictor is not None:
            flat = ops.reshape(projections, (-1, projections.shape[-1]))
            flat = self.predictor(flat, training=training)
            predictions = ops.reshape(flat, (-1, 2, flat.shape[-1]))
        return {
            "embeddings": predictions,
            "projections": projections,
            "representation": embedded["representation"],
        }

    def nearest_neighbours(self, projections):
        """The support set's nearest neighbour (cosine) of each of `(n, D)` projections.

        Computed under `stop_gradient`, in float32 (float64 for float64
        inputs); a tie goes to the first row of the support set.

        Returns:
            `(n, D)` unit rows of `support_set`.
        """
        z = ops.stop_gradient(ops.convert_to_tensor(projections))
        z = l2_normalize(ops.cast(z, compute_dtype(z)))
        support = ops.cast(self.support_set.keys, z.dtype)  # unit rows
        nearest = ops.argmax(ops.matmul(z, ops.transpose(support)), axis=-1)
        return ops.take(support, nearest, axis=0)

    def finish(self, model, prepared, embedded):
        projections = embedded["projections"]
        predictions = embedded["embeddings"]
        predictions = ops.cast(predictions, compute_dtype(predictions))
        first, second = (
            ops.cast(self.nearest_neighbours(projections[:, view]), predictions.dtype)
            for view in (0, 1)
        )
        rows = ops.stack([first, predictions[:, 1], second, predictions[:, 0]], axis=1)
        return Step(
            None,
            rows,
            projections,
            prepared.sample_weight,
            prepared.labels,
            embedded["representation"] if prepared.labels is not None else None,
        )

    def after_step(self, model, step):
        """The first view's projections of the batch (all replicas') into the support set."""
        projections, _ = gather_candidates(ops.stop_gradient(step.embeddings[:, 0]))
        self.support_set.enqueue(projections)

    def get_config(self):
        predictor = self.predictor
        if isinstance(predictor, keras.layers.Layer):
            predictor = keras.saving.serialize_keras_object(predictor)
        return {**super().get_config(), "queue_size": self.queue_size, "predictor": predictor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("predictor"), dict):
            config["predictor"] = keras.saving.deserialize_keras_object(config["predictor"])
        return cls(**config)
