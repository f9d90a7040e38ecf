"""ContrastiveModel: `model.fit(dataset)` trains a contrastive encoder."""

import inspect

import keras

from keras_contrastive import methods
from keras_contrastive.layers import LogitScale, MultiView
from keras_contrastive.lora.enable_lora import apply_lora_spec, lora_spec
from keras_contrastive.losses import contract_of
from keras_contrastive.methods.dual_encoder import text_is_strings
from keras_contrastive.models._trainer import ContrastiveTrainer
from keras_contrastive.models.gradient_cache import GradientCache
from keras_contrastive.ops import _validation as v

# The towers' variables exist once these are built (augmenters and tokenizers hold none).
_BUILT = ("encoder", "projection_head", "image_encoder", "text_encoder", "image_head", "text_head")
_TOWERS = (*_BUILT, "augmenter", "text_preprocessor", "logit_scale")
# The method a one-encoder model trains with, by the labels the loss's contract takes.
_METHOD_FOR_LABELS = {
    "ignored": methods.TwoView,
    "integer": methods.Supervised,
    "pairs": methods.Pairs,
}


@keras.saving.register_keras_serializable(package="keras_contrastive")
class ContrastiveModel(ContrastiveTrainer):
    """A `keras.Model` whose `fit` trains an encoder contrastively.

    The model holds the towers; a training method (`kc.methods`) turns each
    batch into the loss's `(y_true, y_pred)`, and the step is Keras' own
    (`compute_loss`, `optimizer.apply_gradients`, `compute_metrics`). The
    method is `method=`, or, when it is `None`:

    - **One encoder** (`encoder=`): the method the loss's contract asks for
      (`kc.losses.contract_of`): `TwoView` (SimCLR, Chen et al. 2020; the
      default loss `NTXentLoss()`) on `images` with an `augmenter` or on
      `((view_1, view_2),)`; `Supervised` on `(images, labels)` for losses
      that take class labels (`SupConLoss`, `TripletLoss`,
      `keras.losses.Circle()` or a loss of your own); `Pairs` on
      `((x_1, x_2), similar)` for `ContrastiveMarginLoss`.
    - **Two towers** (`image_encoder=`, `text_encoder=`): `DualEncoder` (CLIP,
      Radford et al. 2021) on `{"image": ..., "text": ...}`, with an optional
      learned temperature (`logit_scale="learnable"`). Default loss:
      `CLIPLoss()`.

    `momentum=` (and `queue_size=`) is `method=kc.methods.MoCo(momentum,
    queue_size)`: MoCo v2's momentum key encoder and queue of negatives.
    `gradient_cache_chunks=k` trains with `kc.models.GradientCache(k)`:
    contrastive batches larger than the towers' activation memory.

    `model(x)` / `model.embed(x)` / `model.predict(x)` return the encoder
    representation (the projection head is for training only, as in SimCLR).
    In the dual mode `embed_image` and `embed_text` return the joint
    embeddings (after the heads, which define the shared space).

    Towers fine-tuned with `kc.lora.enable_lora` reload ready to train: the
    config records each tower's `kc.lora.lora_spec`, and `from_config`
    enables LoRA from it on the rebuilt towers before Keras loads the
    weights (the merged kernels), so `keras.saving.load_model` gives the
    same outputs, alpha and frozen variables, and adapters that train.

    Under `tf.distribute.MirroredStrategy` the losses score each replica's
    rows against the embeddings of all replicas (see
    `keras_contrastive.distribute`), the metrics are those of the global
    batch, and the in-step augmentation folds the replica id into its seed.
    The seed of a step is `(seed, iteration)`, so a run restored from a
    checkpoint replays the same augmentations.

    Args:
        encoder: a `keras.Model` (or layer) mapping inputs to `(B, R)`.
        projection_head: optional layer `(B, R) -> (B, D)`, e.g.
            `kc.layers.ProjectionHead()`.
        augmenter: optional single-view augmentation layer, e.g.
            `kc.layers.SimCLRAugmentation(...)`, accepting `seed=`.
        image_encoder, text_encoder: the two towers of the dual mode.
        image_head, text_head: optional projections into the shared space.
        text_preprocessor: optional `kc.layers.TextPreprocessor` turning
            `tf.string` text into the text encoder's inputs; `None` for a text
            encoder that takes strings itself (`kc.encoders.from_keras_hub`).
        logit_scale: dual mode: `None` (the loss's fixed temperature),
            `"learnable"` (CLIP: initial temperature 0.07, scale clamped at
            100), a `kc.layers.LogitScale`, or a `kc.layers.SigmoidLogitScale`
            (SigLIP: learned temperature and bias, for `SigLIPLoss`). Passed
            to the loss as its `temperature` (and `bias`) state.
        method: `None` (chosen as above) or a `kc.methods.Method`.
        probe_classes: optional number of classes of an online linear probe
            trained on the stop-gradient representation when the batches
            carry labels; reported as `probe_accuracy`.
        seed: integer base seed of the in-step augmentation (and of a MoCo
            queue's random initial keys).
        gradient_cache_chunks: int >= 1, the number of sub-batches the towers
            run in (`kc.models.GradientCache`); 1 (default) runs the plain step.
        momentum, queue_size: `None` (default), or MoCo's EMA factor in
            [0, 1) (0.999) and the number of queued negatives (65536, or
            `None` for in-batch keys only): the method `kc.methods.MoCo`.

    Example:

    >>> import keras_contrastive as kc
    >>> encoder = kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8)
    >>> model = kc.ContrastiveModel(
    ...     encoder=encoder,
    ...     projection_head=kc.layers.ProjectionHead(hidden_dims=(32,), output_dim=16),
    ...     augmenter=kc.layers.SimCLRAugmentation(image_size=(16, 16)),
    ... )
    >>> model.compile(optimizer="adam", loss=kc.losses.NTXentLoss(temperature=0.1))
    >>> type(model.method).__name__
    'TwoView'

    References:
        - Chen et al., "A Simple Framework for Contrastive Learning of Visual
          Representations", ICML 2020.
        - Radford et al., "Learning Transferable Visual Models From Natural
          Language Supervision", ICML 2021.
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
        method=None,
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
                "Pass either `encoder` (one encoder) or both `image_encoder` and "
                f"`text_encoder` (dual encoder). Received: encoder={_name(encoder)}, "
                f"image_encoder={_name(image_encoder)}, text_encoder={_name(text_encoder)}"
            )
        method = _moco(method, momentum, queue_size, dual)
        if method is not None and not isinstance(method, methods.Method):
            raise ValueError(f"`method` must be a kc.methods.Method. Received: method={method!r}")
        self.gradient_cache_chunks = v.check_int("gradient_cache_chunks", gradient_cache_chunks, 1)
        if self.gradient_cache_chunks > 1:
            self.gradient_cache = GradientCache(self.gradient_cache_chunks)
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
        self._build_heads()
        self._given_method = methods.DualEncoder() if dual and method is None else method
        if self._given_method is not None:
            self._given_method.attach(self)

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
        layers = [getattr(self, name) for name in _BUILT] + [self.logit_scale, self.probe]
        if all(layer.built for layer in layers if layer is not None):
            self.built = True  # all variables exist: ready for load_weights / BackupAndRestore

    @property
    def method(self):
        """The `kc.methods.Method` the model trains with (chosen at `compile` if not given)."""
        return getattr(self, "_step_method", None) or self._given_method

    def _resolve_method(self, loss):
        if self._given_method is not None:
            return self._given_method
        labels = "ignored" if loss is None else contract_of(loss).labels
        return _METHOD_FOR_LABELS[labels]()

    # ------------------------------------------------------------- inference
    def call(self, inputs, training=False):
        if self.encoder is None:
            if not isinstance(inputs, dict):
                return self.embed_image(inputs, training=training)
            out = {}
            if "image" in inputs:
                out["image"] = self.embed_image(inputs["image"], training=training)
            if "text" in inputs:
                out["text"] = self.embed_text(inputs["text"], training=training)
            return out
        if isinstance(inputs, dict) and "hard_negatives" in inputs:  # a batch with mined negatives
            inputs = inputs["inputs"]
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
        if text_is_strings(texts) and not takes_strings(self.text_encoder):
            if self.text_preprocessor is None:
                raise ValueError(
                    "Texts are tf.string but the model has no `text_preprocessor` to "
                    "tokenize them. Pass `text_preprocessor=kc.layers.TextPreprocessor(...)` "
                    "or feed token ids."
                )
            texts = self.text_preprocessor(texts)
        x = self.text_encoder(texts, training=training)
        return x if self.text_head is None else self.text_head(x, training=training)

    def make_views(self, images, seed=None):
        """`(B, V, ...)` augmented views of `images`, by the `augmenter` (2 views by default)."""
        return self._views(images, training=True, seed=seed)

    # ---------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        for name in _TOWERS:
            config[name] = _serialize(getattr(self, name))
        config.update(
            {
                "method": _serialize(self._given_method),
                "probe_classes": self.probe_classes,
                "seed": self.seed,
                "gradient_cache_chunks": self.gradient_cache_chunks,
            }
        )
        towers = {name: getattr(self, name) for name in _BUILT}
        lora = {name: lora_spec(tower) for name, tower in towers.items() if tower is not None}
        lora = {name: spec for name, spec in lora.items() if spec is not None}
        if lora:
            config["lora"] = lora  # read from the towers' layers: `kc.lora.lora_spec`
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lora = config.pop("lora", None) or {}
        for name in (*_TOWERS, "method"):
            if config.get(name) is not None:
                config[name] = keras.saving.deserialize_keras_object(config[name])
        model = cls(**config)
        # Keras rebuilds the layers of `MultiHeadAttention` without LoRA and saves no
        # `trainable` flag of a variable; enabling LoRA from the spec again, before
        # the weights load, restores both (and alpha) and keeps the adapters trainable.
        for name, spec in lora.items():
            apply_lora_spec(getattr(model, name), spec, source=f"config of `{name}`")
        return model


def takes_strings(encoder):
    """Whether `encoder` takes raw `tf.string` texts (it tokenizes them itself)."""
    inputs = getattr(encoder, "inputs", None)
    return bool(inputs) and len(inputs) == 1 and inputs[0].dtype == "string"


def _moco(method, momentum, queue_size, dual):
    """`momentum=` / `queue_size=` as the method they stand for, `kc.methods.MoCo`."""
    if momentum is None:
        if queue_size is not None:
            raise ValueError(
                "`queue_size` needs a momentum encoder: pass `momentum` too (MoCo v2: "
                f"momentum=0.999, queue_size=65536). Received: queue_size={queue_size!r}, "
                "momentum=None"
            )
        return method
    if dual or method is not None:
        raise ValueError(
            "`momentum` (a MoCo key encoder) is the method kc.methods.MoCo, for one "
            f"`encoder`, and takes no other `method`. Received: momentum={momentum!r}, "
            f"dual encoder={dual}, method={method!r}"
        )
    return methods.MoCo(momentum=momentum, queue_size=queue_size)


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


def _serialize(layer):
    return None if layer is None else keras.saving.serialize_keras_object(layer)


def _name(value):
    return None if value is None else type(value).__name__
