"""MoCo's method: keys from a momentum encoder, negatives from a queue of past keys."""

import keras
from keras import ops

from keras_contrastive.distribute import gather_candidates
from keras_contrastive.layers import KeyQueue, MomentumEncoder
from keras_contrastive.losses import InfoNCELoss
from keras_contrastive.methods._predictor import projection_dim
from keras_contrastive.methods.method import Step, project, with_state
from keras_contrastive.methods.two_view import TwoView
from keras_contrastive.metrics import ContrastiveAccuracy
from keras_contrastive.ops import _validation as v


@keras.saving.register_keras_serializable(package="keras_contrastive")
class MoCo(TwoView):
    """Momentum Contrast (MoCo v2): queries against momentum keys and a queue.

    The first view goes through the model's query towers (`encoder`,
    `projection_head`), the second through `key_encoder`, a
    `kc.layers.MomentumEncoder` copy of them made when the model is built and
    updated after each optimizer step as `θ_k ← m θ_k + (1 − m) θ_q`. A
    BatchNormalization of the key towers normalizes the keys' batch with its
    own statistics, as MoCo's code runs the key encoder
    (`kc.layers.MomentumEncoder(batch_statistics=True)`). With the moving
    statistics instead, which lag behind the batches early in training, the
    keys hardly differ between images: on digits, the 1-label linear probe
    and kNN fell by about 5 points (`benchmarks/RESULTS.md`). MoCo's
    shuffling BN, which keeps the statistics of a query's batch from telling
    it its key, needs several devices and is not implemented: the keys'
    statistics are those of the replica's own key batch.
    The negatives of each query are the in-batch keys and the
    `queue_size` most recent keys, kept in `key_queue` (a
    `kc.layers.KeyQueue`), passed to the loss as its `"negative_keys"` state
    and written after each step: under a distribution strategy, the keys of
    all replicas. Key towers and queue are saved with the model.

    The batch layout is `TwoView`'s. The default loss is
    `kc.losses.InfoNCELoss(temperature=0.2)` (MoCo v2); a loss must declare
    the `"negative_keys"` state when there is a queue.

    Args:
        momentum: the EMA factor `m` in [0, 1). MoCo: 0.999.
        queue_size: `None` (in-batch keys only) or the number of past keys
            used as negatives, an int >= 1. MoCo: 65536.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     method=kc.methods.MoCo(momentum=0.999, queue_size=4096),
    ... )
    >>> model.compile(optimizer="sgd")

    References:
        - He et al., "Momentum Contrast for Unsupervised Visual Representation
          Learning", CVPR 2020.
        - Chen et al., "Improved Baselines with Momentum Contrastive Learning",
          2020 (MoCo v2: τ = 0.2).
    """

    def __init__(self, momentum=0.999, queue_size=65536, **kwargs):
        super().__init__(**kwargs)
        self.momentum = v.check_number("momentum", momentum, min=0, max=1, max_inclusive=False)
        self.queue_size = v.check_int("queue_size", queue_size, min=1, allow_none=True)
        self.key_encoder = self.key_queue = None

    def attach(self, model):
        towers = [t for t in (model.encoder, model.projection_head) if t is not None]
        self.key_encoder = MomentumEncoder.copy_of(
            towers, self.momentum, name="key_encoder", batch_statistics=True
        )
        if self.queue_size is not None:
            dim = projection_dim(model, "MoCo")
            self.key_queue = KeyQueue(self.queue_size, dim, seed=model.seed, name="key_queue")

    def default_loss(self):
        return InfoNCELoss(temperature=0.2)

    def default_metrics(self):
        return [ContrastiveAccuracy(queries="first_view")]

    def state_names(self, model):
        return () if self.queue_size is None else ("negative_keys",)

    def check(self, model, loss):
        super().check(model, loss)
        if self.queue_size is not None and getattr(loss, "negative_keys", None) is not None:
            raise ValueError(
                "With a MoCo queue, the negatives beyond the batch come from the queue: "
                "compile with InfoNCELoss(negative_keys=None). Received: negative_keys of "
                f"shape {loss.negative_keys.shape}"
            )

    def towers(self, model, views, training):
        representation, queries = project(
            model.encoder, model.projection_head, views[:, 0], training
        )
        keys = self.key_encoder(views[:, 1])
        return {
            "embeddings": ops.stack([queries, ops.cast(keys, queries.dtype)], axis=1),
            "representation": representation,
        }

    def finish(self, model, prepared, embedded):
        embeddings = embedded["embeddings"]
        negatives = None if self.key_queue is None else self.key_queue.keys
        return Step(
            None,
            with_state(embeddings, negative_keys=negatives),
            embeddings,
            prepared.sample_weight,
            prepared.labels,
            embedded["representation"] if prepared.labels is not None else None,
        )

    def after_step(self, model, step):
        """The EMA of the key towers, then the batch's keys (all replicas') into the queue."""
        self.key_encoder.update([t for t in (model.encoder, model.projection_head) if t])
        if self.key_queue is not None:
            keys, _ = gather_candidates(ops.stop_gradient(step.embeddings[:, 1]))
            self.key_queue.enqueue(keys)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "queue_size": self.queue_size}
