"""The step of `ContrastiveModel`: Keras' `train_step`, with a training method for `call`."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.distribute import global_sum, isolate_collective_keys, replica_context
from keras_contrastive.ops import _validation as v

_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


class ContrastiveTrainer(keras.Model):
    """`train_step` / `test_step` over a `kc.methods.Method`.

    Read like Keras' own `train_step`: the method turns the batch into the
    loss's `(y_true, y_pred)` (`forward`), `compute_loss` calls the compiled
    loss on them, the optimizer applies the gradients, the method's
    `after_step` runs (momentum updates), and `compute_metrics` updates the
    metrics. Subclasses provide `_resolve_method(loss)`, the towers the
    methods read, `probe` and `logit_scale`.
    """

    gradient_cache = None

    # --------------------------------------------------------------- compile
    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """As `keras.Model.compile`; `loss` defaults to the method's.

        The method checks the loss's `kc.losses.LossContract` (any
        `keras.losses.Loss` whose contract fits trains). `metrics` are
        `keras.metrics.Metric`s updated as `update_state(y_true, embeddings,
        sample_weight)`, e.g. `kc.metrics.ContrastiveAccuracy()`; they are
        reported after the method's defaults (`contrastive_accuracy`), which
        a metric of the same name replaces. `temperature` and
        `probe_accuracy` are reported when the model has those.
        """
        method = self._resolve_method(loss)
        loss = method.default_loss() if loss is None else loss
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(
                "`loss` must be a keras.losses.Loss instance, e.g. kc.losses.NTXentLoss() or "
                f"keras.losses.Circle(). Received: loss={loss!r}"
            )
        method.check(self, loss)
        user_metrics = [_metric(m) for m in metrics or ()]
        names = {m.name for m in user_metrics}
        with self.distribute_strategy.scope():  # mirrored, even when compiled outside the scope
            defaults = [m for m in method.default_metrics() if m.name not in names]
            trackers = [keras.metrics.Mean(name="loss"), *defaults, *user_metrics]
            if self.logit_scale is not None:
                trackers.append(keras.metrics.Mean(name="temperature"))
            if self.probe is not None:
                trackers.append(keras.metrics.SparseCategoricalAccuracy(name="probe_accuracy"))
        # Plain attributes: the model reports these, in this order, and nothing else.
        object.__setattr__(self, "_step_method", method)
        object.__setattr__(self, "_trackers", {m.name: m for m in trackers})
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        self._compile_config.config["metrics"] = metrics  # restored by compile_from_config
        # Another MirroredStrategy of this process must not share its collective keys.
        isolate_collective_keys(self.distribute_strategy)
        if self.built:
            # Over every trainable variable, the probe's included even when a
            # step has no labels, so that the optimizer state saves and restores.
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Restores `compile()` from a `.keras` file, optimizer state included."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", {}).values())

    # ------------------------------------------------------------------ steps
    def train_step(self, data):
        weights = self.trainable_weights
        if self.gradient_cache is not None:
            step, loss, gradients = self.gradient_cache.compute_gradients(self, data)
        else:
            with tf.GradientTape() as tape:
                step = self.forward(data, training=True)
                loss = self.step_loss(step, training=True)
                scaled = self.optimizer.scale_loss(loss)
            gradients = tape.gradient(scaled, weights)
        # The probe has no gradient on batches without labels: leave it out.
        pairs = [(g, w) for g, w in zip(gradients, weights, strict=True) if g is not None]
        self.optimizer.apply_gradients(pairs)
        self._step_method.after_step(self, step)
        return self.compute_metrics(None, step.y_true, step, step.sample_weight)

    def test_step(self, data):
        step = self.forward(data, training=False)
        self.step_loss(step, training=False)
        return self.compute_metrics(None, step.y_true, step, step.sample_weight)

    def forward(self, data, training):
        """The method's `Step` of one batch: what the loss and the metrics receive."""
        return self._step_method.forward(self, data, training, seed=self.step_seed(training))

    def step_loss(self, step, training):
        """The loss of a `Step`: `compute_loss`, the online probe's, this replica's share.

        Also records the loss for the `loss` metric, as Keras' step does.
        """
        batch, weight_sum = _local_size(step)
        loss = self.compute_loss(
            y=step.y_true, y_pred=step.y_pred, sample_weight=step.sample_weight, training=training
        )
        if self.probe is not None and step.labels is not None:
            step.probe_logits = self.probe(ops.stop_gradient(step.representation))
            probe_loss = keras.losses.sparse_categorical_crossentropy(
                step.labels, step.probe_logits, from_logits=True
            )
            loss = loss + ops.mean(probe_loss) / _num_replicas()
        if replica_context() is not None:
            # Keras divides each replica's mean by the number of replicas R, the
            # global mean only when the B examples split evenly; a replica of b
            # holds b / B of it (sample weights for "mean_with_sample_weight").
            global_batch, global_weight = tf.unstack(global_sum(ops.stack([batch, weight_sum])))
            if self.loss.reduction in _MEAN_REDUCTIONS:
                weighted = self.loss.reduction == "mean_with_sample_weight"
                share = (weight_sum / global_weight) if weighted else (batch / global_batch)
                loss = loss * share * _num_replicas()
            # The replicas' losses sum to the global batch's: reported per example of it.
            self._trackers["loss"].update_state(loss * global_batch / batch, sample_weight=batch)
        else:
            self._trackers["loss"].update_state(loss, sample_weight=batch)
        # Stops `fit` with a clear error instead of writing NaN weights. Under XLA
        # (`jit_compile=True`) the check compiles away: add `TerminateOnNaN` there.
        return tf.debugging.check_numerics(
            loss,
            "ContrastiveModel: the loss is NaN or Inf. Lower the learning rate or check "
            "the inputs for non-finite values",
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss on the method's `(y_true, y_pred)`, plus the layers' losses.

        `y_pred` may be a dict of embeddings and state (see
        `kc.methods.Method`), which the loss reads itself: the loss object
        is called as given, never changed. Where the method has no labels
        (`y=None`), the loss receives `(B,)` zeros. Keras' automatic build (under a
        distribution strategy) calls this with `x` and the output of
        `call()`, the representation, which no contrastive loss takes: that
        call builds nothing and returns 0.
        """
        if x is not None:
            return ops.zeros((), dtype="float32")
        embeddings = y_pred["embeddings"] if isinstance(y_pred, dict) else y_pred
        if y is None:  # a loss whose contract ignores labels: Keras losses take a tensor
            y = ops.zeros(ops.shape(embeddings)[:1], "int32")
        if replica_context() is not None and _num_replicas() > 1:
            tf.debugging.assert_greater_equal(
                tf.shape(embeddings)[0],
                2,
                message=v.min_batch_message("y_pred", 2, "on each replica to have negatives")
                + " Use a global batch of at least 2 x num_replicas.",
            )
        loss = ops.cast(self.loss(y, y_pred, sample_weight), "float32")
        for extra in self.losses:  # regularizers and `add_loss`, as Keras adds them
            loss = loss + ops.sum(ops.cast(extra, "float32"))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Updates the metrics from a `Step` (`y_pred`) and returns their global results.

        Metrics receive `(y_true, step.embeddings, sample_weight)`. Under a
        strategy, the results of metrics that are means (`total / count`,
        e.g. `ContrastiveAccuracy`) are those of the global batch: each
        replica's `total` and `count` are summed over the replicas.
        """
        step = y_pred
        for name, metric in self._trackers.items():
            if name == "loss":
                continue
            if name == "temperature":
                metric.update_state(self.logit_scale.temperature)
            elif name == "probe_accuracy":
                if step.labels is not None:
                    metric.update_state(step.labels, step.probe_logits)
            else:
                metric.update_state(y, step.embeddings, sample_weight=sample_weight)
        results = self._global_results()
        if _multi_worker(self.distribute_strategy):
            # Keras reduces step outputs across workers with MEAN over axis 0,
            # which fails on scalars (keras-team/keras#20585). The results are
            # already global (the same on every replica): give them that axis.
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _global_results(self):
        """The metrics' results; those of means summed over replicas, once, in one all-reduce."""
        metrics = self._trackers
        if replica_context() is None:
            return {name: metric.result() for name, metric in metrics.items()}
        means = [name for name, metric in metrics.items() if _is_mean(metric)]
        results = {name: metrics[name].result() for name in metrics if name not in means}
        shares = [ops.cast(v.value, "float32") for n in means for v in _mean_variables(metrics[n])]
        if shares:
            sums = global_sum(ops.stack(shares))
            for i, name in enumerate(means):
                results[name] = ops.divide_no_nan(sums[2 * i], sums[2 * i + 1])
        return {name: results[name] for name in metrics}

    def step_seed(self, training):
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


def _metric(metric):
    if isinstance(metric, keras.metrics.Metric):
        return metric
    raise ValueError(
        "`metrics` must be keras.metrics.Metric instances, updated as "
        "`update_state(y_true, embeddings, sample_weight)`, e.g. "
        f"kc.metrics.ContrastiveAccuracy(). Received: {metric!r}"
    )


def _is_mean(metric):
    return isinstance(metric, keras.metrics.Mean)


def _mean_variables(metric):
    return metric.total, metric.count


def _local_size(step):
    """This replica's number of examples and sum of sample weights, as float32."""
    embeddings = step.embeddings
    batch = ops.cast(ops.shape(embeddings)[0], "float32")
    if step.sample_weight is None:
        return batch, batch
    return batch, ops.sum(ops.cast(step.sample_weight, "float32"))


def _multi_worker(strategy):
    """Whether `strategy` spans several workers (processes)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )


def _num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync
