"""DINO's method: a student matches a momentum teacher's centered, sharpened prototypes."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.distribute import global_sum
from keras_contrastive.layers import MomentumEncoder, MultiView, Prototypes
from keras_contrastive.losses.dino_loss import DINOLoss
from keras_contrastive.methods._data import (
    check_same_shape,
    check_sample_weight,
    flat_ids,
    stack_pair,
    structure_error,
    unpack,
)
from keras_contrastive.methods._predictor import projection_dim
from keras_contrastive.methods.byol import cosine_momentum
from keras_contrastive.methods.method import Method, Prepared, Step, embed_views, input_views
from keras_contrastive.methods.simsiam import online_towers
from keras_contrastive.metrics.embedding_std import EmbeddingStd
from keras_contrastive.ops import _validation as v
from keras_contrastive.ops.similarity import compute_dtype


@keras.saving.register_keras_serializable(package="keras_contrastive")
class DINO(Method):
    """Self-distillation with no labels (DINO): a student predicts a momentum teacher.

    The student is the model's `encoder` and `projection_head` (DINO's
    head up to its bottleneck) and the method's `prototypes`, a
    `kc.layers.Prototypes` layer of `num_prototypes` unit prototypes (DINO's
    weight-normalized last layer): its logits are the cosines of the
    projection with each prototype. The teacher, `teacher`, is a
    `kc.layers.MomentumEncoder` copy of the three, updated after each
    optimizer step as `ξ ← τ ξ + (1 − τ) θ`, with `τ` on BYOL's cosine
    schedule from `momentum` to 1 over `total_steps` (see
    `kc.methods.BYOL`; constant without `total_steps`). A BatchNormalization
    of the teacher normalizes each batch with its own statistics, as DINO's
    code runs the teacher (`kc.layers.MomentumEncoder(batch_statistics=True)`):
    with the moving statistics, which lag behind the batches early in
    training, the teacher's logits hardly differ between images, and
    centering makes its targets uniform (measured on digits: the loss stays at
    `log K`).

    Multi-crop: the teacher sees the two global views, the student those
    and `num_local_views` local views (smaller crops, at a lower resolution
    where the encoder allows). The loss (default `kc.losses.DINOLoss()`,
    `τ_s = 0.1`) is the cross-entropy of each student view against the
    teacher's distribution of each other global view,
    `softmax((t − c) / τ_t)`: centered by `center`, the moving average
    `c ← m c + (1 − m) mean(t)` of the teacher's logits over the global batch
    (both global views, all replicas; `m = center_momentum`, updated after
    each step), and sharpened by the teacher temperature `τ_t`, which rises
    linearly from `warmup_teacher_temperature` to `teacher_temperature` over
    `warmup_steps` optimizer steps (DINO: 0.04 to 0.07 over the first 30 of
    300 epochs) and stays there. Centering keeps one prototype from taking
    over, sharpening keeps the distribution from going uniform: the two
    collapses DINO balances.

    What the loss receives: `y_pred` of `(B, 2 + V, K)`, the teacher's logits
    of the two global views, then the student's of all `V = 2 + L` views
    (global first), for a loss of contract `labels="ignored"`,
    `y_pred="views"` taking state `("teacher_temperature", "center")`
    (`kc.losses.DINOLoss`). The metrics receive the student's projections
    of the two global views, `(B, 2, D)`; the default metric is
    `kc.metrics.EmbeddingStd()` (`embedding_std`, the collapse monitor).
    Prototypes, teacher and center are saved with the model and not
    exported (`kc.export.export_encoder` exports the encoder).

    Batch layout: `x` is `images`, from which the model's `augmenter` makes
    the two global views and `local_augmenter` the `num_local_views` local
    ones, in the step; or a tuple `(global_1, global_2, local_1, ...,
    local_L)` of views made in tf.data (any `L >= 0`, the local views of one
    shape), yielded as `((global_1, global_2, ...),)`. An optional `y` of
    `(B,)` class labels feeds the online probe only.

    Args:
        num_prototypes: int >= 1, `K`. DINO: 65,536.
        momentum: the teacher's EMA factor `τ_base` in `[0, 1)` at the first
            step. DINO: 0.996.
        total_steps: `None` (constant `τ`), or `K >= 1` steps over which `τ`
            rises to 1 on the cosine schedule (DINO: the whole run).
        teacher_temperature: `τ_t > 0` after the warm-up. Default 0.07.
        warmup_teacher_temperature: `τ_t > 0` at the first step. Default 0.04.
        warmup_steps: int >= 0, the steps of the linear warm-up of `τ_t`, or
            `None` (default): a tenth of `total_steps` (DINO's 30 of 300
            epochs), or none without `total_steps`.
        center_momentum: `m` in `[0, 1)`, of the center's moving average.
            DINO: 0.9.
        local_augmenter: `None` (default) or a layer making one local view
            of `images` (e.g. `kc.layers.SimCLRAugmentation(image_size=(96,
            96), crop_area=(0.05, 0.4))`, DINO's local crops); called
            `num_local_views` times per batch.
        num_local_views: int >= 1, the local views `local_augmenter` makes.
            Default 8 (DINO's code).
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import keras_contrastive as kc
    >>> model = kc.ContrastiveModel(
    ...     encoder=kc.encoders.small_cnn(input_shape=(None, None, 3), width=8),
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ...     method=kc.methods.DINO(
    ...         num_prototypes=64,
    ...         total_steps=1000,
    ...         local_augmenter=kc.layers.SimCLRAugmentation(
    ...             image_size=(8, 8), crop_area=(0.05, 0.4)
    ...         ),
    ...         num_local_views=4,
    ...     ),
    ... )
    >>> model.compile(optimizer="adam")
    >>> [round(float(model.method.teacher_temperature_at(k)), 3) for k in (0, 50, 100, 500)]
    [0.04, 0.055, 0.07, 0.07]

    Reference: Caron et al., "Emerging Properties in Self-Supervised Vision
    Transformers", ICCV 2021 (Algorithm 1; `τ_s = 0.1`, `τ_t` 0.04 -> 0.07,
    `m = 0.9`, `τ_base = 0.996`, 65,536 prototypes, multi-crop).
    """

    layout = (
        "`x` = `images` (two global views made by the model's `augmenter` and local "
        "views by the method's `local_augmenter`, in the step) or the tuple "
        "`(global_1, global_2, local_1, ...)` made in tf.data, yielded as "
        "`((global_1, global_2, ...),)`; optional (B,) labels for the online probe as `y`"
    )
    labels = ("ignored",)
    y_pred = ("views",)

    def __init__(
        self,
        num_prototypes=65536,
        momentum=0.996,
        total_steps=None,
        teacher_temperature=0.07,
        warmup_teacher_temperature=0.04,
        warmup_steps=None,
        center_momentum=0.9,
        local_augmenter=None,
        num_local_views=8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_prototypes = v.check_int("num_prototypes", num_prototypes, min=1)
        self.momentum = v.check_number("momentum", momentum, min=0, max=1, max_inclusive=False)
        self.total_steps = v.check_int("total_steps", total_steps, min=1, allow_none=True)
        self.teacher_temperature = v.check_positive(
            "teacher_temperature", teacher_temperature, allow_variable=False
        )
        self.warmup_teacher_temperature = v.check_positive(
            "warmup_teacher_temperature", warmup_teacher_temperature, allow_variable=False
        )
        self.warmup_steps = v.check_int("warmup_steps", warmup_steps, min=0, allow_none=True)
        self.center_momentum = v.check_number(
            "center_momentum", center_momentum, min=0, max=1, max_inclusive=False
        )
        if local_augmenter is not None and not isinstance(local_augmenter, keras.layers.Layer):
            raise TypeError(
                "`local_augmenter` must be None or a keras.layers.Layer making one local view "
                f"of a batch of images. Received: local_augmenter={local_augmenter!r}"
            )
        self.local_augmenter = local_augmenter
        self.num_local_views = v.check_int("num_local_views", num_local_views, min=1)
        self._local_views = None
        if local_augmenter is not None:
            self._local_views = MultiView(local_augmenter, self.num_local_views)
        self.prototypes = self.teacher = self.center = None

    def attach(self, model):
        dim = projection_dim(model, "DINO")
        self.prototypes = Prototypes(self.num_prototypes, name="prototypes")
        self.prototypes.build((None, dim))
        self.teacher = MomentumEncoder.copy_of(
            self.student_towers(model), self.momentum, name="teacher", batch_statistics=True
        )
        self.center = self.add_weight(
            shape=(self.num_prototypes,), initializer="zeros", trainable=False, name="center"
        )

    def student_towers(self, model):
        """The towers the teacher copies and follows: encoder, projection head, prototypes."""
        return [*online_towers(model), self.prototypes]

    def default_loss(self):
        return DINOLoss()

    def default_metrics(self):
        return [EmbeddingStd()]

    def state_names(self, model):
        return ("teacher_temperature", "center")

    def loss_hint(self, model):
        return " DINO's loss is kc.losses.DINOLoss (the default)."

    @property
    def resolved_warmup_steps(self):
        """The steps of the warm-up of `τ_t`: `warmup_steps`, or its default."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return 0 if self.total_steps is None else round(self.total_steps / 10)

    def teacher_temperature_at(self, step):
        """`τ_t` at optimizer step `k = step` (0-based): the linear warm-up, then constant."""
        final, warmup = self.teacher_temperature, self.resolved_warmup_steps
        if warmup == 0:
            return ops.convert_to_tensor(final, "float32")
        start = self.warmup_teacher_temperature
        fraction = ops.clip(ops.cast(step, "float32") / warmup, 0.0, 1.0)
        return start + (final - start) * fraction

    def prepare(self, model, data, training, seed):
        x, y, sample_weight = unpack(data, self.layout)
        if isinstance(x, (tuple, list)):
            if len(x) < 2:
                raise structure_error(self.layout, data)
            inputs = {"global": stack_pair(("global_1", "global_2"), x[:2], data, self.layout)}
            if len(x) > 2:
                inputs["local"] = self._given_local_views(x[2:], x[0])
        else:
            inputs = {"global": input_views(model, x, data, self.layout, seed)}
            if self._local_views is not None:
                local_seed = None
                if seed is not None:
                    local_seed = tf.random.experimental.stateless_split(seed, 2, alg="philox")[1]
                inputs["local"] = self._local_views(x, training=True, seed=local_seed)
        reference = inputs["global"]
        labels = None if y is None else flat_ids("labels", y, data, self.layout, reference)
        return Prepared(inputs, None, check_sample_weight(sample_weight, reference), labels)

    def _given_local_views(self, local, first_global):
        local = [ops.convert_to_tensor(view) for view in local]
        for index, view in enumerate(local, start=1):
            name = f"local_{index}"
            v.check_same_batch(name, view, "global_1", first_global)
            check_same_shape(name, view, "local_1", local[0])
        return ops.stack(local, axis=1)

    def towers(self, model, inputs, training):
        """Student logits `(B, 2 + L, K)` (the `"embeddings"`), teacher logits `(B, 2, K)`."""
        embedded = embed_views(model, inputs["global"], training)
        projections = [embedded["embeddings"]]
        if "local" in inputs:
            projections.append(embed_views(model, inputs["local"], training)["embeddings"])
        projections = ops.concatenate(projections, axis=1)
        num_views, dim = projections.shape[1], projections.shape[-1]
        logits = self.prototypes(ops.reshape(projections, (-1, dim)))
        global_views = inputs["global"]
        teacher = self.teacher(ops.reshape(global_views, (-1, *ops.shape(global_views)[2:])))
        return {
            "embeddings": ops.reshape(logits, (-1, num_views, self.num_prototypes)),
            "teacher": ops.reshape(teacher, (-1, 2, self.num_prototypes)),
            "projections": embedded["embeddings"],
            "representation": embedded["representation"],
        }

    def finish(self, model, prepared, embedded):
        student = embedded["embeddings"]
        student = ops.cast(student, compute_dtype(student))
        teacher = ops.cast(embedded["teacher"], student.dtype)
        step = 0 if model.optimizer is None else model.optimizer.iterations
        y_pred = {
            "embeddings": ops.concatenate([teacher, student], axis=1),
            "teacher_temperature": self.teacher_temperature_at(step),
            "center": self.center,
        }
        return Step(
            None,
            y_pred,
            embedded["projections"],
            prepared.sample_weight,
            prepared.labels,
            embedded["representation"] if prepared.labels is not None else None,
        )

    def after_step(self, model, step):
        """The teacher's EMA and the center's, by the teacher's logits of the global batch."""
        teacher = ops.stop_gradient(step.y_pred["embeddings"][:, :2])
        flat = ops.reshape(teacher, (-1, self.num_prototypes))
        total = global_sum(ops.sum(flat, axis=0))
        count = global_sum(ops.cast(ops.shape(flat)[0], total.dtype))
        mean = ops.cast(total / count, self.center.dtype)
        m = self.center_momentum
        self.center.assign(m * self.center.value + (1.0 - m) * mean)
        momentum = None
        if self.total_steps is not None:
            momentum = cosine_momentum(
                model.optimizer.iterations - 1, self.momentum, self.total_steps
            )
        self.teacher.update(self.student_towers(model), momentum=momentum)

    def get_config(self):
        local = self.local_augmenter
        if local is not None:
            local = keras.saving.serialize_keras_object(local)
        return {
            **super().get_config(),
            "num_prototypes": self.num_prototypes,
            "momentum": self.momentum,
            "total_steps": self.total_steps,
            "teacher_temperature": self.teacher_temperature,
            "warmup_teacher_temperature": self.warmup_teacher_temperature,
            "warmup_steps": self.warmup_steps,
            "center_momentum": self.center_momentum,
            "local_augmenter": local,
            "num_local_views": self.num_local_views,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("local_augmenter") is not None:
            config["local_augmenter"] = keras.saving.deserialize_keras_object(
                config["local_augmenter"]
            )
        return cls(**config)
