"""`MomentumEncoder`: frozen towers that follow their originals as a moving average."""

import keras
from keras import ops

from keras_contrastive.lora import _layers as lora_layers
from keras_contrastive.lora.merge_lora import merge_lora
from keras_contrastive.ops._validation import check_bool, check_number


def _check_towers(towers, name="towers"):
    """`towers` (a layer or a list of layers) as a non-empty list of layers."""
    listed = list(towers) if isinstance(towers, (list, tuple)) else [towers]
    if not listed:
        raise ValueError(f"`{name}` must be a layer or a non-empty list of layers. Received: []")
    for i, tower in enumerate(listed):
        if not isinstance(tower, keras.layers.Layer):
            raise TypeError(
                f"`{name}` must be a keras.layers.Layer or a list of them. Received: "
                f"{name}[{i}]={tower!r} of type {type(tower).__name__}"
            )
    return listed


def _check_momentum(momentum):
    return check_number("momentum", momentum, min=0, max=1, max_inclusive=False)


def _freeze(tower):
    """Makes every weight of `tower` non-trainable, those of its sublayers included."""
    # TensorFlow's tracking skips `layer.trainable = False` when it already reads False
    # (AutoTrackable's `self.x = self.x` short cut), so a layer deserialized with
    # `trainable=False` would keep the trainable sublayers its `__init__` made: setting
    # True first makes False reach every sublayer and weight.
    tower.trainable = True
    tower.trainable = False


# Layers that training mode would turn on, and the attribute that turns each off.
_NOISE = (
    (keras.layers.Dropout, "rate"),
    (keras.layers.GaussianDropout, "rate"),
    (keras.layers.AlphaDropout, "rate"),
    (keras.layers.GaussianNoise, "stddev"),
)


def _with_batch_statistics(tower, x):
    """`tower(x)` with every batch normalization of `tower` on the batch's own statistics.

    Keras runs a non-trainable BatchNormalization in inference mode whatever
    `training` says; its flag is lifted for this call only (at trace time in
    a `tf.function`), as PyTorch runs a frozen network in train mode. The
    moving statistics keep their values (the layer's momentum is 1 for the
    call): they follow the sources' by `update` alone, the same on every
    replica. Dropout and noise layers, which training mode would turn on,
    get a rate of 0 for the call.
    """
    layers = list(tower._flatten_layers(include_self=True))
    changes = []  # (layer, attribute, value for the call)
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            changes += [(layer, "trainable", True), (layer, "momentum", 1.0)]
        changes += [(layer, name, 0.0) for kind, name in _NOISE if isinstance(layer, kind)]
    saved = [(layer, name, getattr(layer, name)) for layer, name, _ in changes]
    try:
        for layer, name, value in changes:
            setattr(layer, name, value)
        return tower(x, training=True)
    finally:
        for layer, name, value in reversed(saved):
            setattr(layer, name, value)


def _output_shape(tower, input_shape):
    """The output shape of the built `tower`, or `None` if it cannot be known."""
    if input_shape is None and isinstance(getattr(tower, "outputs", None), list):
        outputs = tower.outputs  # a functional model: its outputs are symbolic
        return tuple(outputs[0].shape) if len(outputs) == 1 else None
    if input_shape is None:
        input_shape = (tower.get_build_config() or {}).get("input_shape")
    if input_shape is None:
        return None
    try:
        return tuple(tower.compute_output_shape(input_shape))
    except NotImplementedError:  # a layer without `compute_output_shape`
        return None


def _without_lora(tower):
    """Folds the LoRA adapters of a built `tower`, if any, into its kernels (`merge_lora`)."""
    if tower.built and lora_layers.adapted(tower):
        merge_lora(tower)


def _effective_weights(tower):
    """`(path, value)` of `tower.weights` as a plain copy holds them: LoRA kernels merged.

    A layer adapted by `kc.lora.enable_lora` computes with `W + (alpha / rank) A B`
    and holds `W`, `A` and `B` as variables; its copy holds the sum, in float32,
    as its kernel, and no factors. The moving average then follows the weights the
    source computes with: averaging `A` and `B` apart would not (the product of
    the averages is not the average of the products).
    """
    merged, factors = {}, set()
    for _, layer in lora_layers.adapted(tower):
        factors.update(id(factor) for factor in lora_layers.factors(layer))
        merged[id(lora_layers.base_weight(layer))] = lora_layers.merged_weight(layer)
    return [(w.path, merged.get(id(w), w)) for w in tower.weights if id(w) not in factors]


def _frozen_copy(tower, input_shape, index):
    """A non-trainable copy of the built `tower`: same config and weights, `key_<name>`.

    The copy of a tower with LoRA adapters is a plain one, whose kernels hold the
    tower's merged ones (see `_effective_weights`).
    """
    config = keras.saving.serialize_keras_object(tower)
    config["config"]["name"] = f"key_{tower.name}"
    copy = keras.saving.deserialize_keras_object(config)
    if not copy.built:  # a tower without a build config: build it from the shape
        if input_shape is None:
            raise ValueError(
                f"`MomentumEncoder.copy_of` cannot build the copy of tower {index} "
                f"(`{tower.name}`): its input shape is unknown. Pass a first tower whose "
                "output shape is known (a functional keras.Model with an Input, or a "
                "layer built with `build(input_shape)`) before it."
            )
        copy.build(input_shape)
    _without_lora(copy)  # a LoRA tower's config rebuilds its adapters: fold them
    copy.set_weights([ops.convert_to_numpy(value) for _, value in _effective_weights(tower)])
    return copy


@keras.saving.register_keras_serializable(package="keras_contrastive")
class MomentumEncoder(keras.layers.Layer):
    """Frozen copies of towers, updated as an exponential moving average of the originals.

    The key encoder of MoCo (He et al., 2020) and the target network of BYOL
    (Grill et al., 2020): its towers are never trained by the optimizer;
    after each optimizer step `update(sources)` moves every float weight `w`
    of every tower towards the matching weight of the source (query, online)
    towers:

    `w ← momentum · w + (1 − momentum) · w_source`.

    Non-trainable weights follow the same way, so BatchNormalization's moving
    statistics, with which the frozen towers normalize, track the sources'.
    `call` runs the towers in order in inference mode (`training=False`: no
    dropout, moving BN statistics that the call never updates; see
    `batch_statistics` for the batch's own) and stops the gradient of the
    output.

    Sources fine-tuned with `kc.lora.enable_lora` are followed by the weights
    they compute with: a tower holds each adapted kernel merged,
    `W + (alpha / rank) · A · B`, and no factors (a copy is made so, towers
    given with adapters are merged), and `update` averages it towards the
    source's merged kernel, so the towers are the moving average of the
    source's effective weights whatever `A` and `B` do. They have the same
    weights with or without LoRA on the source, before or after it is enabled.

    Build one with `MomentumEncoder.copy_of(towers)` from the built source
    towers. Under a `tf.distribute` strategy each replica holds its own copy of
    the weights (aggregation `"none"`): `update` in the replica context reads
    the sources' synchronized weights and assigns the local copy, so every
    replica makes the same update without communication.

    Args:
        towers: a `keras.layers.Layer` or a list of layers applied in order
            (e.g. an encoder and a projection head). They become this layer's
            own towers, made non-trainable (LoRA adapters merged into their
            kernels), and are serialized with it.
        momentum: float in `[0, 1)`, the weight `m` of the current value in the
            moving average; `0` copies the sources. Defaults to `0.999`
            (MoCo; BYOL starts at `0.996`).
        batch_statistics: bool. `False` (default): the towers run in inference
            mode, a BatchNormalization normalizing with its moving statistics.
            `True`: each BatchNormalization normalizes the batch with its own
            statistics, as the reference code of DINO (and BYOL, MoCo) runs its
            frozen network in train mode; needed where the moving statistics
            lag behind the batches (early in training, with a slow moving
            average). Dropout stays off.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Shape:
        Input: whatever the first tower takes; output: the last tower's output.

    Example:

    >>> query = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> key = MomentumEncoder.copy_of(query, momentum=0.99)
    >>> key(np.ones((3, 4))).shape
    TensorShape([3, 2])
    >>> key.update(query)  # after each optimizer step

    References:
        - He et al., 2020. "Momentum Contrast for Unsupervised Visual
          Representation Learning" (MoCo, `m = 0.999`).
          https://arxiv.org/abs/1911.05722
        - Grill et al., 2020. "Bootstrap Your Own Latent: A New Approach to
          Self-Supervised Learning" (BYOL). https://arxiv.org/abs/2006.07733
    """

    def __init__(self, towers, momentum=0.999, batch_statistics=False, **kwargs):
        super().__init__(**kwargs)
        self.towers = _check_towers(towers)
        self.momentum = _check_momentum(momentum)
        self.batch_statistics = check_bool("batch_statistics", batch_statistics)
        for tower in self.towers:
            _without_lora(tower)
            _freeze(tower)
        if all(tower.built for tower in self.towers):
            self.built = True

    @classmethod
    def copy_of(cls, towers, momentum=0.999, name="momentum_encoder", batch_statistics=False):
        """A `MomentumEncoder` of frozen copies of the given, built `towers`.

        Each copy has the config and the current weights of its tower and is
        named `key_<tower name>`. A copy that its config does not build is
        built from the output shape of the tower before it.

        Args:
            towers: a built `keras.layers.Layer` or a list of them, applied in
                order: the query (online) towers whose EMA the copies follow.
            momentum: float in `[0, 1)`. Defaults to `0.999` (MoCo).
            name: str, the name of the layer. Defaults to `"momentum_encoder"`.
            batch_statistics: bool, as the constructor's. Defaults to `False`.

        Returns:
            A `MomentumEncoder` whose `update(towers)` follows `towers`.

        Example:

        >>> head = kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=4)
        >>> head.build((None, 6))
        >>> key = MomentumEncoder.copy_of([head])
        >>> key.towers[0].name == "key_" + head.name
        True
        """
        towers = _check_towers(towers)
        _check_momentum(momentum)
        copies, shape = [], None
        for index, tower in enumerate(towers):
            if not tower.built:
                raise ValueError(
                    f"`MomentumEncoder.copy_of` needs built towers, to copy their weights. "
                    f"Tower {index} (`{tower.name}`) is not built: call it on a batch or "
                    "`build(input_shape)` it first."
                )
            if index:
                shape = _output_shape(towers[index - 1], shape)
            copies.append(_frozen_copy(tower, shape, index))
        return cls(copies, momentum=momentum, batch_statistics=batch_statistics, name=name)

    def build(self, input_shape):
        shape = input_shape
        for tower in self.towers:
            if not tower.built:
                tower.build(shape)
            shape = tower.compute_output_shape(shape)

    def call(self, inputs):
        x = inputs
        for tower in self.towers:
            if self.batch_statistics:
                x = _with_batch_statistics(tower, x)
            else:
                x = tower(x, training=False)
        return keras.tree.map_structure(ops.stop_gradient, x)

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for tower in self.towers:
            shape = tower.compute_output_shape(shape)
        return shape

    def update(self, sources, momentum=None):
        """Moves every float weight towards its source: `w ← m·w + (1 − m)·w_source`.

        Call it after the optimizer step, in eager mode, in a `tf.function`
        or in a replica context. The weights pair up in order, non-trainable
        ones (BatchNormalization's moving statistics) included; integer
        weights (counters, seeds) are left as they are. A source layer with
        LoRA pairs its merged kernel `W + (alpha / rank) · A · B` (float32)
        with the tower's kernel, and its factors with nothing.

        Args:
            sources: a layer or a list of layers, one per tower with the same
                weights (the towers that `copy_of` copied).
            momentum: `None` (default) for the layer's `momentum`, or the `m`
                of this update only, in `[0, 1]` (`1` leaves the weights as
                they are): a float, or a scalar tensor such as a schedule's
                value at the current step (BYOL's cosine schedule of `m`
                towards 1). A variable or a symbolic tensor is used unchecked.

        Raises:
            ValueError: if `sources` does not match the towers: another number
                of towers, of weights, or a weight of another shape; or if
                `momentum` is a number outside `[0, 1]`.
            TypeError: if `momentum` is not a number or a scalar tensor.
        """
        pairs = self._paired_weights(_check_towers(sources, "sources"))
        if momentum is None:
            momentum = self.momentum
        else:
            momentum = check_number("momentum", momentum, min=0, max=1, allow_variable=True)
        mix = 1.0 - momentum  # in Python for a float: 1 - 0.999 loses no digits to float32
        for weight, source in pairs:
            if "float" in str(weight.dtype):
                value = ops.cast(source, weight.dtype)
                keep, add = ops.cast(momentum, weight.dtype), ops.cast(mix, weight.dtype)
                weight.assign(keep * weight.value + add * value)

    def _paired_weights(self, sources):
        """`(weight, source weight)` pairs, after checking that `sources` match the towers."""
        if len(sources) != len(self.towers):
            raise ValueError(
                f"`sources` must have one layer per tower: {len(self.towers)}. Received "
                f"{len(sources)}: {[source.name for source in sources]}"
            )
        pairs = []
        for index, (tower, source) in enumerate(zip(self.towers, sources, strict=True)):
            weights, source_weights = tower.weights, _effective_weights(source)
            if len(weights) != len(source_weights):
                raise ValueError(
                    f"`sources[{index}]` (`{source.name}`) must have the weights of tower "
                    f"{index} (`{tower.name}`): {len(weights)} weights. Received "
                    f"{len(source_weights)} weights."
                )
            for weight, (path, source_weight) in zip(weights, source_weights, strict=True):
                if tuple(weight.shape) != tuple(source_weight.shape):
                    raise ValueError(
                        f"`sources[{index}]` (`{source.name}`) must have the weight shapes "
                        f"of tower {index} (`{tower.name}`). Received {path} "
                        f"of shape {tuple(source_weight.shape)} for {weight.path} of shape "
                        f"{tuple(weight.shape)}."
                    )
                pairs.append((weight, source_weight))
        return pairs

    def get_config(self):
        return {
            **super().get_config(),
            "towers": [keras.saving.serialize_keras_object(tower) for tower in self.towers],
            "momentum": self.momentum,
            "batch_statistics": self.batch_statistics,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["towers"] = [
            keras.saving.deserialize_keras_object(tower) for tower in config["towers"]
        ]
        return cls(**config)
