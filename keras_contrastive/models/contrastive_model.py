"""ContrastiveModel: `model.fit(dataset)` trains a contrastive encoder."""

import contextlib
import inspect

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.distribute import global_sum, isolate_collective_keys, replica_context
from keras_contrastive.layers import LogitScale, MultiView, SigmoidLogitScale
from keras_contrastive.models import _momentum
from keras_contrastive.models._grad_cache import cached_gradients, check_gradient_cache_chunks
from keras_contrastive.models._modes import DualEncoderMode, TwoViewMode, text_is_strings
from keras_contrastive.ops import _validation as v

_SERIALIZED = (
    "encoder",
    "projection_head",
    "augmenter",
    "image_encoder",
    "text_encoder",
    "image_head",
    "text_head",
    "text_preprocessor",
    "logit_scale",
)

_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


@keras.saving.register_keras_serializable(package="keras_contrastive")
class ContrastiveModel(keras.Model):
    """A `keras.Model` whose `fit` trains an encoder contrastively.

    Two modes, chosen by the constructor arguments:

    - **Two-view** (`encoder=`): SimCLR (Chen et al. 2020) on raw images with
      an `augmenter` making two views in the step, or on `(view_1, view_2)`
      pairs made in `tf.data`; supervised with `(images, labels)` and
      `SupConLoss` / `TripletLoss`; pairs `((x_1, x_2), similar)` with
      `ContrastiveMarginLoss`. Default loss: `NTXentLoss()`.
    - **Dual encoder** (`image_encoder=` and `text_encoder=`): CLIP (Radford
      et al. 2021) on `{"image": ..., "text": ...}` batches, with an optional
      learnable temperature (`logit_scale="learnable"`). Default loss:
      `CLIPLoss()`.

    Two options for more negatives than fit in memory at once:

    - **Momentum encoder and queue** (MoCo v2; `momentum=`, `queue_size=`,
      two-view mode with `InfoNCELoss`): the first view goes through the
      query towers (`encoder`, `projection_head`), the second through frozen
      copies, `key_encoder` and `key_projection_head`, made at construction
      and updated after each optimizer step as `θ_k ← m θ_k + (1 − m) θ_q`.
      The key towers run in inference mode: a BatchNormalization there
      normalizes with its moving statistics, which follow the query towers'
      by the same average (this also stops the batch-statistics leak that
      MoCo's shuffling BN prevents). The negatives of each query are the
      in-batch keys and the `queue_size` most recent keys, kept L2-normalized
      in `key_queue` (a FIFO started from random unit vectors), written after
      each step: under a distribution strategy, the keys of all replicas.
      Batches of any size wrap around the end of the queue (a batch larger
      than the queue leaves its newest `queue_size` keys). Key towers and
      queue are saved with the model. Without `queue_size` the negatives are
      the in-batch keys only.
    - **Gradient caching** (GradCache; `gradient_cache_chunks=k`): the towers
      run on `k` sub-batches of each replica's batch, first without a tape
      for the embeddings, then again to back-propagate the gradient of the
      full-batch loss with respect to those embeddings. The update equals the
      plain step's while activation memory is that of one sub-batch, for
      about one more forward pass of compute. `k` must divide the batch of
      each replica (a batch that does not raises an error naming
      `gradient_cache_chunks`; use `drop_remainder=True`). The augmentation
      runs once, on the whole batch; random layers in the towers (dropout)
      replay the same draws in both passes. Caveat: BatchNormalization in
      the towers normalizes each sub-batch with its own statistics, so the
      update differs from the full-batch one, and its moving statistics are
      updated `2k` times per step (by each sub-batch in both passes).

    `model(x)` / `model.embed(x)` / `model.predict(x)` return the encoder
    representation (the projection head is for training only, as in SimCLR).
    In the dual mode `embed_image` and `embed_text` return the joint
    embeddings (after the heads, which define the shared space).

    Under `tf.distribute.MirroredStrategy` the losses score each replica's
    rows against the embeddings of all replicas (see
    `keras_contrastive.distribute`), and the in-step augmentation folds the
    replica id into its seed. The seed of a step is `(seed, iteration)`, so a
    run restored from a checkpoint replays the same augmentations.

    Args:
        encoder: a `keras.Model` (or layer) mapping inputs to `(B, R)`.
        projection_head: optional layer `(B, R) -> (B, D)`, e.g.
            `kc.layers.ProjectionHead()`.
        augmenter: optional single-view augmentation layer, e.g.
            `kc.layers.SimCLRAugmentation(...)`, accepting `seed=`.
        image_encoder, text_encoder: the two towers of the dual mode.
        image_head, text_head: optional projections into the shared space.
        text_preprocessor: optional `kc.layers.TextPreprocessor` turning
            `tf.string` text into the text encoder's inputs.
        logit_scale: dual mode: `None` (the loss's fixed temperature),
            `"learnable"` (CLIP: initial temperature 0.07, scale clamped at
            100), a `kc.layers.LogitScale`, or a `kc.layers.SigmoidLogitScale`
            (SigLIP: learned temperature and bias, for `SigLIPLoss`).
        probe_classes: optional number of classes of an online linear probe
            trained on the stop-gradient representation when the batches
            carry labels; reported as `probe_accuracy`.
        seed: integer base seed of the in-step augmentation (and of the
            queue's random initial keys).
        gradient_cache_chunks: int >= 1, the number of sub-batches the towers
            run in; 1 (default) runs the plain step. Gao et al. 2021 use
            sub-batches that fit the accelerator (e.g. 8 of 512 for 4096).
        momentum: `None` (default, no key encoder) or the EMA factor `m` in
            [0, 1) of the key towers. MoCo: 0.999.
        queue_size: with `momentum`: `None` (default, no queue) or the number
            of past keys used as negatives. MoCo: 65536.

    Example:

    >>> import keras_contrastive as kc
    >>> encoder = kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8)
    >>> model = kc.ContrastiveModel(
    ...     encoder=encoder,
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ... )
    >>> model.compile(optimizer="adam", loss=kc.losses.NTXentLoss(temperature=0.1))

    MoCo v2 on the same towers (Chen et al. 2020 use InfoNCE with τ = 0.2):

    >>> moco = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     momentum=0.999,
    ...     queue_size=4096,
    ... )
    >>> moco.compile(optimizer="sgd", loss=kc.losses.InfoNCELoss(temperature=0.2))

    References:
        - Chen et al., "A Simple Framework for Contrastive Learning of Visual
          Representations", ICML 2020.
        - Radford et al., "Learning Transferable Visual Models From Natural
          Language Supervision", ICML 2021.
        - He et al., "Momentum Contrast for Unsupervised Visual Representation
          Learning", CVPR 2020; Chen et al., "Improved Baselines with Momentum
          Contrastive Learning", 2020 (MoCo v2).
        - Gao et al., "Scaling Deep Contrastive Learning Batch Size under
          Memory Limited Setup", RepL4NLP 2021 (GradCache).
    """

    def __init__(
        self,
        encoder=None,
        projection_head=None,
        augmenter=None,
        image_encoder=None,
        text_encoder=None,
        image_head=None,
        text_head=None,
        text_preprocessor=None,
        logit_scale=None,
        probe_classes=None,
        seed=0,
        gradient_cache_chunks=1,
        momentum=None,
        queue_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        dual = image_encoder is not None or text_encoder is not None
        if dual == (encoder is not None) or (dual and None in (image_encoder, text_encoder)):
            raise ValueError(
                "Pass either `encoder` (two-view mode) or both `image_encoder` and "
                f"`text_encoder` (dual-encoder mode). Received: encoder={_name(encoder)}, "
                f"image_encoder={_name(image_encoder)}, text_encoder={_name(text_encoder)}"
            )
        self.gradient_cache_chunks = check_gradient_cache_chunks(gradient_cache_chunks)
        _momentum.check_momentum_arguments(momentum, queue_size, dual)
        self.momentum = momentum
        self.queue_size = queue_size
        self.mode = DualEncoderMode() if dual else TwoViewMode()
        self.encoder = encoder
        self.projection_head = projection_head
        self.augmenter = augmenter
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_head = image_head
        self.text_head = text_head
        self.text_preprocessor = text_preprocessor
        self.logit_scale = _logit_scale(logit_scale, dual)
        self.probe_classes = v.check_int("probe_classes", probe_classes, min=2, allow_none=True)
        self.seed = v.check_int("seed", seed, min=0, max=2**31 - 1)
        self._augmenter_takes_seed = augmenter is not None and (
            "seed" in inspect.signature(augmenter.call).parameters
        )
        if not dual and augmenter is not None:
            self._views = augmenter if isinstance(augmenter, MultiView) else MultiView(augmenter)
        self.probe = None
        if probe_classes is not None:
            self.probe = keras.layers.Dense(self.probe_classes, name="probe", dtype="float32")
        self._trackers = {
            "loss": keras.metrics.Mean(name="loss"),
            "contrastive_accuracy": keras.metrics.Mean(name="contrastive_accuracy"),
        }
        if self.logit_scale is not None:
            self._trackers["temperature"] = keras.metrics.Mean(name="temperature")
        if self.probe is not None:
            self._trackers["probe_accuracy"] = keras.metrics.Mean(name="probe_accuracy")
        self._build_heads()
        self.key_encoder = self.key_projection_head = self.key_queue = None
        if momentum is not None:
            self._build_key_towers()

    # ----------------------------------------------------------------- build
    def _build_heads(self):
        """Builds heads and probe from the encoders' output shapes, when known."""
        pairs = [
            (self.encoder, self.projection_head),
            (self.image_encoder, self.image_head),
            (self.text_encoder, self.text_head),
        ]
        for tower, head in pairs:
            shape = _output_shape(tower)
            if shape is None:
                continue
            if head is not None and not head.built:
                head.build(shape)
            if tower is (self.encoder or self.image_encoder) and self.probe is not None:
                self.probe.build(shape)
        if self._towers_built():
            self.built = True  # all variables exist: ready for load_weights / BackupAndRestore

    def _build_key_towers(self):
        """MoCo: frozen copies of the query towers, and the queue of keys."""
        shape = _output_shape(self.encoder)
        if shape is None or not self._towers_built():
            raise ValueError(
                "`momentum` needs an `encoder` whose output shape is known at construction "
                "(a functional keras.Model with an Input, or a built model), to copy it "
                f"into the key encoder. Received: encoder={_name(self.encoder)}"
            )
        self.key_encoder = _momentum.momentum_copy(self.encoder)
        if self.projection_head is not None:
            self.key_projection_head = _momentum.momentum_copy(self.projection_head, shape)
            shape = self.projection_head.compute_output_shape(shape)
        if self.queue_size is not None:
            self.key_queue = _momentum.KeyQueue(
                self.queue_size, shape[-1], seed=self.seed, name="key_queue"
            )

    # ------------------------------------------------------------- inference
    def call(self, inputs, training=False):
        if isinstance(self.mode, DualEncoderMode):
            if not isinstance(inputs, dict):
                return self.embed_image(inputs, training=training)
            out = {}
            if "image" in inputs:
                out["image"] = self.embed_image(inputs["image"], training=training)
            if "text" in inputs:
                out["text"] = self.embed_text(inputs["text"], training=training)
            return out
        if isinstance(inputs, (tuple, list)):  # views or pairs: each one embedded
            return tuple(self.encoder(x, training=training) for x in inputs)
        return self.encoder(inputs, training=training)

    def embed(self, inputs, training=False):
        """The representation used for downstream tasks (no head, no augmentation)."""
        return self(inputs, training=training)

    def embed_image(self, images, training=False):
        """Dual mode: images -> joint embeddings `(B, D)`."""
        x = self.image_encoder(images, training=training)
        return x if self.image_head is None else self.image_head(x, training=training)

    def embed_text(self, texts, training=False):
        """Dual mode: `tf.string` texts (or token inputs) -> joint embeddings `(B, D)`."""
        if text_is_strings(texts):
            if self.text_preprocessor is None:
                raise ValueError(
                    "Texts are tf.string but the model has no `text_preprocessor` to "
                    "tokenize them. Pass `text_preprocessor=kc.layers.TextPreprocessor(...)` "
                    "or feed token ids."
                )
            texts = self.text_preprocessor(texts)
        x = self.text_encoder(texts, training=training)
        return x if self.text_head is None else self.text_head(x, training=training)

    # --------------------------------------------------------------- compile
    def compile(self, optimizer="adam", loss=None, **kwargs):
        """As `keras.Model.compile`; `loss` defaults to the mode's loss.

        `metrics` are not used: the model reports `loss`,
        `contrastive_accuracy`, and `temperature` / `probe_accuracy` when on.
        """
        loss = self.mode.default_loss() if loss is None else loss
        if not isinstance(loss, self.mode.losses):
            names = ", ".join(cls.__name__ for cls in self.mode.losses)
            raise ValueError(
                f"The {self.mode.name} mode trains with one of: {names}. Received: loss={loss!r}"
            )
        if self.momentum is not None:
            _momentum.check_momentum_loss(loss)
        if isinstance(self.logit_scale, SigmoidLogitScale) and not hasattr(loss, "bias"):
            raise ValueError(
                "A kc.layers.SigmoidLogitScale learns a temperature and a bias, for "
                f"kc.losses.SigLIPLoss. Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        # Another MirroredStrategy of this process must not share its collective keys.
        isolate_collective_keys(self.distribute_strategy)
        if self._towers_built():
            # Over every trainable variable, the probe's included even when a
            # step has no labels, so that the optimizer state saves and restores.
            self.optimizer.build(self.trainable_variables)

    def _towers_built(self):
        layers = (
            self.encoder,
            self.projection_head,
            self.image_encoder,
            self.text_encoder,
            self.image_head,
            self.text_head,
            self.probe,
            self.logit_scale,
        )
        return all(layer.built for layer in layers if layer is not None)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' `compute_loss`, on the contrastive layout the steps build.

        The steps pass `x=None` and `y_pred` from the mode. Keras' automatic
        build (under a distribution strategy) calls this with `x` and the
        output of `call()`, the representation, which no contrastive loss
        takes: that call builds nothing and returns 0.
        """
        if x is not None:
            return ops.zeros((), dtype="float32")
        return super().compute_loss(
            y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )

    def compile_from_config(self, config):
        """Restores `compile()` from a `.keras` file, optimizer state included."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' build from the first batch, without averaging the batch.

        Under a strategy Keras reduces the first distributed batch with MEAN
        to read its shapes, which fails for `tf.string` texts and, under
        `MultiWorkerMirroredStrategy`, for nested batches
        (keras-team/keras#20585). One replica's batch has the shapes.
        """
        strategy = self.distribute_strategy
        if iterator is None or self._distribute_strategy is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            break
        local = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], batch)
        return super()._maybe_symbolic_build(data_batch=local)

    @property
    def metrics(self):
        return list(self._trackers.values())

    # ------------------------------------------------------------------ steps
    def train_step(self, data):
        weights = self.trainable_weights
        if self.gradient_cache_chunks > 1:
            forward, loss, gradients = cached_gradients(self, data, self.gradient_cache_chunks)
        else:
            with tf.GradientTape() as tape:
                forward, loss = self._forward_and_loss(data, training=True)
                scaled = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, weights)
        # The probe has no gradient on batches without labels: leave it out.
        pairs = [(g, w) for g, w in zip(gradients, weights, strict=True) if g is not None]
        self.optimizer.apply_gradients(pairs)
        if self.momentum is not None:
            _momentum.momentum_update(self, forward.y_pred[:, 1])
        return self._update_metrics(forward, loss)

    def test_step(self, data):
        forward, loss = self._forward_and_loss(data, training=False)
        return self._update_metrics(forward, loss)

    def _forward_and_loss(self, data, training):
        forward = self.mode.forward(self, data, training=training, seed=self._step_seed(training))
        return forward, self._loss(forward, training)

    def _loss(self, forward, training):
        """The loss of a batch's `Forward`: contrastive, plus the online probe's."""
        if tf.distribute.get_replica_context() is not None and _num_replicas() > 1:
            tf.debugging.assert_greater_equal(
                tf.shape(forward.y_pred)[0],
                2,
                message=v.min_batch_message("y_pred", 2, "on each replica to have negatives")
                + " Use a global batch of at least 2 x num_replicas.",
            )
        with self._step_loss_arguments():
            loss = self.compute_loss(
                y=forward.y_true,
                y_pred=forward.y_pred,
                sample_weight=forward.sample_weight,
                training=training,
            )
        if self.probe is not None and forward.labels is not None:
            forward.probe_logits = self.probe(ops.stop_gradient(forward.representation))
            probe_loss = keras.losses.sparse_categorical_crossentropy(
                forward.labels, forward.probe_logits, from_logits=True
            )
            loss = loss + ops.mean(probe_loss) / _num_replicas()
        loss = loss * self._replica_share(forward)
        # Stops `fit` with a clear error instead of writing NaN weights. Under XLA
        # (`jit_compile=True`) the check compiles away: add `TerminateOnNaN` there.
        loss = tf.debugging.check_numerics(
            loss,
            "ContrastiveModel: the loss is NaN or Inf. Lower the learning rate or check "
            "the inputs for non-finite values",
        )
        return loss

    def _replica_share(self, forward):
        """`b · R / B`: this replica's share of a global-batch mean, over Keras' `1 / R`.

        Keras divides each replica's mean loss by the number of replicas `R`,
        which gives the global mean only when the `B` examples split evenly;
        a replica of `b` holds `b / B` of it (sample weights instead of counts
        for `"mean_with_sample_weight"`). 1 for summed losses and outside a
        strategy. Terms equal on every replica (regularizers) keep their sum.
        """
        reduction = self.loss.reduction
        if replica_context() is None or reduction not in _MEAN_REDUCTIONS:
            return 1.0
        if reduction == "mean_with_sample_weight" and forward.sample_weight is not None:
            local = ops.sum(ops.cast(forward.sample_weight, "float32"))
        else:
            local = ops.cast(ops.shape(forward.y_pred)[0], "float32")
        return local * _num_replicas() / ops.maximum(global_sum(local), 1e-12)

    def _update_metrics(self, forward, loss):
        batch = ops.shape(forward.y_pred)[0]
        # The replicas' losses sum to the global batch's: reported per example of it.
        global_batch = global_sum(ops.cast(batch, "float32"))
        self._trackers["loss"].update_state(
            loss * global_batch / ops.cast(batch, "float32"), sample_weight=batch
        )
        reported = ["loss"]
        if forward.accuracy is not None:
            self._trackers["contrastive_accuracy"].update_state(forward.accuracy, batch)
            reported.append("contrastive_accuracy")
        if self.logit_scale is not None:
            self._trackers["temperature"].update_state(self.logit_scale.temperature)
            reported.append("temperature")
        if "probe_accuracy" in self._trackers and forward.labels is not None:
            predicted = ops.cast(ops.argmax(forward.probe_logits, axis=-1), "int32")
            hits = predicted == ops.cast(forward.labels, "int32")
            self._trackers["probe_accuracy"].update_state(ops.cast(hits, "float32"))
            reported.append("probe_accuracy")
        results = self._global_results(reported)
        if _multi_worker(self.distribute_strategy):
            # Keras reduces step outputs across workers with MEAN over axis 0,
            # which fails on scalars (keras-team/keras#20585). The results are
            # already global (the same on every replica): give them that axis.
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _global_results(self, names):
        """The trackers' results over all replicas, the same value on each.

        In a replica, a tracker's variables hold that replica's share, and
        Keras averages the step's results over replicas, which weights a
        replica of 3 examples like one of 4: sum the shares instead.
        """
        if replica_context() is None:
            return {name: self._trackers[name].result() for name in names}
        trackers = [self._trackers[name] for name in names]
        shares = [ops.cast(v.value, "float32") for t in trackers for v in (t.total, t.count)]
        sums = global_sum(ops.stack(shares))
        return {
            name: ops.divide_no_nan(sums[2 * i], sums[2 * i + 1]) for i, name in enumerate(names)
        }

    def _step_seed(self, training):
        """`(seed + replica offset, iteration)`: replayable, distinct per replica."""
        if not self._augmenter_takes_seed:
            return None
        step = self.optimizer.iterations if training and self.optimizer is not None else -1
        ctx = tf.distribute.get_replica_context()
        replica = 0 if ctx is None else ctx.replica_id_in_sync_group
        return tf.stack(
            [
                tf.cast(self.seed, "int32") + 1_000_003 * tf.cast(replica, "int32"),
                tf.cast(step, "int32"),
            ]
        )

    @contextlib.contextmanager
    def _step_loss_arguments(self):
        """Lends the compiled loss the model's state for one step.

        The learned temperature (and SigLIP's bias) of `logit_scale`, and the
        MoCo key queue as InfoNCE's extra negatives: a `keras.losses.Loss`
        owns no weights, so the model sets these attributes around the call
        and restores the configured values after it.
        """
        lent = {}
        if self.logit_scale is not None:
            lent["temperature"] = self.logit_scale.temperature
        if isinstance(self.logit_scale, SigmoidLogitScale):
            lent["bias"] = self.logit_scale.bias
        if self.key_queue is not None:
            lent["negative_keys"] = self.key_queue.keys
        configured = {name: getattr(self.loss, name) for name in lent}
        for name, value in lent.items():
            setattr(self.loss, name, value)
        try:
            yield
        finally:
            for name, value in configured.items():
                setattr(self.loss, name, value)

    # ---------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        for name in _SERIALIZED:
            value = getattr(self, name)
            config[name] = None if value is None else keras.saving.serialize_keras_object(value)
        config.update(
            {
                "probe_classes": self.probe_classes,
                "seed": self.seed,
                "gradient_cache_chunks": self.gradient_cache_chunks,
                "momentum": self.momentum,
                "queue_size": self.queue_size,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in _SERIALIZED:
            if config.get(name) is not None:
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def _logit_scale(value, dual):
    if value is None or isinstance(value, LogitScale):  # SigmoidLogitScale included
        return value
    if value == "learnable":
        if not dual:
            raise ValueError("`logit_scale` applies to the dual-encoder mode only.")
        return LogitScale(initial_temperature=0.07, max_scale=100.0, learnable=True)
    raise ValueError(
        "`logit_scale` must be None, 'learnable', a kc.layers.LogitScale or a "
        "kc.layers.SigmoidLogitScale (SigLIPLoss). "
        f"Received: logit_scale={value!r}"
    )


def _output_shape(model):
    try:
        shape = model.output_shape if model is not None else None
    except (AttributeError, ValueError):
        return None
    return tuple(shape) if shape is not None and not isinstance(shape, dict) else None


def _name(value):
    return None if value is None else type(value).__name__


def _multi_worker(strategy):
    """Whether `strategy` spans several workers (processes)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )


def _num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync
