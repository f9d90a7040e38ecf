"""`enable_lora` and `lora_spec`: low-rank adapters on any built Keras model, and their spec."""

import re

from keras_contrastive.lora import _layers as L
from keras_contrastive.ops._validation import check_bool, check_int, check_number

SPEC_KEYS = ("rank", "alpha", "paths", "train_bias")


def enable_lora(model, rank, alpha=None, target_layers=None, train_bias=False):
    """Adds LoRA adapters to the layers of `model` and freezes everything else.

    Each adapted layer computes with `W + (alpha / rank) · A · B`, where the
    frozen kernel `W` is `(d_in, d_out)` (a conv kernel `(..., c_in, c_out)`,
    an embedding table `(vocabulary, dim)`), `A` is `(d_in, rank)` drawn
    he-uniform and `B` is `(rank, d_out)` zeros, so the model's outputs are
    unchanged until it trains (Hu et al. 2021; Keras' own
    `layer.enable_lora`). Only `A` and `B` train.

    - **Which layers**: every `Dense`, `EinsumDense`, `Embedding`, `Conv1D`,
      `Conv2D` and `Conv3D` (subclasses included) anywhere under `model`:
      nested models, layers inside layers, and the query/key/value/output
      `EinsumDense` that `keras.layers.MultiHeadAttention` creates in its own
      build (keras-hub's `Backbone.enable_lora` only looks for layers named
      `query`/`value`, so on a `ResNetBackbone` it adapts nothing, silently).
      With `target_layers`, only those whose path matches: a layer's path is
      the `/`-joined names of the layers that lead to it from `model` (e.g.
      `"transformer_layer_0/self_attention_layer/query"`; for a model built
      in one go, its `layer.path`), and a pattern matches when
      `re.search(pattern, path)` finds it. So `"query|value"` matches those
      names anywhere, `"^encoder/"` one subtree, and `"(^|/)query$"` the
      layers named exactly `query`.
    - **Frozen**: every other variable under `model` gets `trainable=False`,
      the adapted layers' kernels and biases included (Keras' `enable_lora`
      leaves biases trainable); with `train_bias=True` the adapted layers'
      biases train too. Normalization layers (`BatchNormalization` and its
      subclasses, `LayerNormalization`, `GroupNormalization`,
      `RMSNormalization`) get `layer.trainable = False`: in Keras 3 a
      non-trainable `BatchNormalization` runs in inference mode, with its
      moving statistics, even in `fit`. Every other layer under `model` gets
      `layer.trainable = True`, so the flags are the same whatever they were.
      Layers outside `model` (a ContrastiveModel's projection head, when
      `model` is its `encoder`) are left as they are.
    - **Again on an adapted model** (same `rank`) it is safe: adapted layers
      are recognised and kept, `alpha` is set where the adapter's `B` is
      still zero (the outputs do not change), `A` is drawn anew where both
      factors are zero, and the flags are set again. That is how a plain
      Keras model resumes LoRA training after `keras.saving.load_model`,
      which brings the adapted kernel back merged, both factors zero
      (nothing would train), `alpha = rank` for `Dense` and `Embedding`,
      every variable's `trainable` flag reset, and the `EinsumDense` layers
      of `MultiHeadAttention` without LoRA: call
      `enable_lora(model, rank, alpha)` again. A `kc.ContrastiveModel`
      records its towers' spec in its config and reloads ready to train.

    Each adapted layer's `load_own_variables` is wrapped so that after Keras
    loads weights into it (`load_model`, `load_weights`) `A` is drawn anew
    where Keras zeroed both factors. Enable LoRA before `compile` (or
    compile again): the optimizer trains the variables that are trainable
    when it is built. The functions Keras traced for `fit` / `predict` of
    the models under `model` are dropped (they would run without the
    adapters); a model that holds `model` (a `kc.ContrastiveModel` around its
    encoder) traces anew once compiled again.

    Args:
        model: a built `keras.Model` or layer (a `kc.ContrastiveModel`, one of
            its towers, a keras-hub backbone).
        rank: int >= 1, the rank `r` of the factors.
        alpha: number > 0, the scale numerator: the update is
            `(alpha / rank) · A · B`. Defaults to `None`: `alpha = rank`
            (scale 1, Keras' default).
        target_layers: `None` (default: every adaptable layer), a pattern
            (`str` or compiled `re.Pattern`), or a list of patterns (a layer
            matching any is adapted), searched in the layer paths (see above).
        train_bias: bool, whether the adapted layers' biases train too.
            Defaults to `False`.

    Returns:
        The paths of the adapted layers, in model order.

    Raises:
        ValueError: before anything changes, when `rank < 1`, `alpha <= 0`,
            `model` is not built, nothing matches `target_layers` (the message
            lists some paths), a target has a kernel constraint, is quantized
            or is not built, or `model` has a layer adapted with another rank
            (or, after training, another `alpha`).

    Example:

    >>> import keras, keras_contrastive as kc
    >>> inputs = keras.Input((8,))
    >>> outputs = keras.layers.Dense(4, name="out")(keras.layers.Dense(16, name="hidden")(inputs))
    >>> model = keras.Model(inputs, outputs)
    >>> kc.lora.enable_lora(model, rank=2)
    ['hidden', 'out']
    >>> [w.path for w in model.trainable_weights]  # doctest: +NORMALIZE_WHITESPACE
    ['hidden/lora_kernel_a', 'hidden/lora_kernel_b', 'out/lora_kernel_a', 'out/lora_kernel_b']

    References:
        - Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
          ICLR 2022. https://arxiv.org/abs/2106.09685
    """
    L.check_model(model)
    rank = check_int("rank", rank, min=1)
    alpha = rank if alpha is None else check_number("alpha", alpha, min=0, min_inclusive=False)
    train_bias = check_bool("train_bias", train_bias)
    patterns = _patterns(target_layers)
    layers = L.walk(model)
    targets = [(p, layer) for p, layer in layers if _selected(p, layer, patterns)]
    if not targets:
        raise ValueError(_nothing_matches(model, layers, target_layers))
    return _enable(model, layers, targets, rank, alpha, train_bias)


def lora_spec(model):
    """The LoRA spec of `model`, read from its layers: `{rank, alpha, paths, train_bias}`.

    `paths` are the adapted layers' paths under `model` (see
    `kc.lora.enable_lora`), `train_bias` whether an adapted layer's bias is
    trainable. `kc.ContrastiveModel.get_config` records this for each tower
    and `from_config` enables LoRA again from it, so a `.keras` reload has
    the adapters of every layer (those inside `MultiHeadAttention`
    included), the same `alpha` and the same frozen variables.

    Args:
        model: a `keras.Model` or layer.

    Returns:
        A dict (JSON-serializable) or `None` when no layer of `model` has LoRA.

    Raises:
        ValueError: when the adapted layers have different ranks or alphas
            (one spec describes one adapter).

    Example:

    >>> import keras, keras_contrastive as kc
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> kc.lora.lora_spec(model) is None
    True
    >>> _ = kc.lora.enable_lora(model, rank=2, alpha=4)
    >>> kc.lora.lora_spec(model)
    {'rank': 2, 'alpha': 4, 'paths': ['out'], 'train_bias': False}
    """
    layers = L.adapted(model)
    if not layers:
        return None
    ranks = {layer.lora_rank for _, layer in layers}
    alphas = {layer.lora_alpha for _, layer in layers}
    if len(ranks) > 1 or len(alphas) > 1:
        raise ValueError(
            f"The LoRA layers of {model.name!r} have different ranks or alphas, so no one "
            "spec describes them: "
            f"{[(p, layer.lora_rank, layer.lora_alpha) for p, layer in layers]} "
            "(path, rank, alpha). Enable LoRA on them with one `rank` and `alpha`."
        )
    biases = [L.bias(layer) for _, layer in layers]
    alpha = alphas.pop()
    return {
        "rank": int(ranks.pop()),
        "alpha": int(alpha) if float(alpha).is_integer() else float(alpha),
        "paths": [path for path, _ in layers],
        "train_bias": any(b is not None and b.trainable for b in biases),
    }


def apply_lora_spec(model, spec, source="spec"):
    """Enables LoRA on exactly the layers of a `lora_spec` (config or file); returns paths."""
    spec = check_spec(spec, source)
    layers = L.walk(model)
    by_path = dict(layers)
    missing = [p for p in spec["paths"] if not isinstance(by_path.get(p), L.ADAPTABLE)]
    if missing:
        raise ValueError(
            f"The LoRA {source} names layers that {model.name!r} does not have (or that "
            f"are not {L.ADAPTABLE_NAMES}): {missing}. Its layers: {L.some_paths(layers)}"
        )
    targets = [(p, by_path[p]) for p in spec["paths"]]
    return _enable(model, layers, targets, spec["rank"], spec["alpha"], spec["train_bias"])


def check_spec(spec, source="spec"):
    """Raises unless `spec` is a `lora_spec` dict; returns it with checked values."""
    if not isinstance(spec, dict) or sorted(spec) != sorted(SPEC_KEYS):
        raise ValueError(
            f"A LoRA {source} must be a dict with the keys {list(SPEC_KEYS)}, as "
            f"`kc.lora.lora_spec` returns. Received: {spec!r}"
        )
    paths = spec["paths"]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) for p in paths):
        raise ValueError(f"The `paths` of a LoRA {source} must be strings. Received: {paths!r}")
    return {
        "rank": check_int("rank", spec["rank"], min=1),
        "alpha": check_number("alpha", spec["alpha"], min=0, min_inclusive=False),
        "paths": list(paths),
        "train_bias": check_bool("train_bias", spec["train_bias"]),
    }


def _enable(model, layers, targets, rank, alpha, train_bias):
    """Checks every target and adapted layer first, then adapts and freezes."""
    for path, layer in targets:
        _check_target(path, layer)
    target_ids = {id(layer) for _, layer in targets}
    for path, layer in L.adapted(model):
        _check_adapted(path, layer, rank, alpha, id(layer) in target_ids)
    with L.variable_scope(model):
        for _, layer in targets:
            if not L.is_adapted(layer):
                layer.enable_lora(rank, lora_alpha=alpha)
    for _, layer in targets:
        if all(L.is_zero(f) for f in L.factors(layer)):  # as Keras' load leaves it
            L.reinitialize_a(layer)
        layer.lora_alpha = alpha  # lost by Dense.build / Embedding.build on reload
        L.install_load_hook(layer)
    _freeze(model, layers, train_bias)
    L.forget_traced_functions(model)  # an earlier `predict` traced without the adapters
    return [path for path, _ in targets]


def _freeze(model, layers, train_bias):
    """Layer flags first (parents before children), then every variable's own flag."""
    for _, layer in layers:
        trainable = not isinstance(layer, L.NORMALIZATION)
        if layer.trainable != trainable:
            layer.trainable = trainable
    train = set()
    for _, layer in L.adapted(model):
        train.update(id(f) for f in L.factors(layer))
        if train_bias and L.bias(layer) is not None:
            train.add(id(L.bias(layer)))
    for weight in model.weights:
        weight.trainable = id(weight) in train


def _check_target(path, layer):
    kind = type(layer).__name__
    if not layer.built:
        raise ValueError(
            f"Layer {path!r} ({kind}) is not built, so it has no kernel to adapt. Call the "
            "model once on a batch first, or leave the layer out of `target_layers`."
        )
    if L.constraint(layer) is not None:
        raise ValueError(
            f"Layer {path!r} ({kind}) has a kernel constraint, which LoRA's update "
            f"W + (alpha / rank) A B would not obey. Received: constraint="
            f"{L.constraint(layer)!r}. Leave the layer out of `target_layers` "
            "(e.g. a pattern that does not match its path) or remove the constraint."
        )
    if getattr(layer, "quantization_mode", None) is not None:
        raise ValueError(
            f"Layer {path!r} ({kind}) is quantized ({layer.quantization_mode!r}); "
            "kc.lora adapts float layers only. Leave it out of `target_layers`."
        )


def _check_adapted(path, layer, rank, alpha, targeted):
    if layer.lora_rank != rank:
        raise ValueError(
            f"Layer {path!r} already has a LoRA adapter of rank {layer.lora_rank}; one model "
            f"holds adapters of one rank. Expected rank={layer.lora_rank} (or a fresh model). "
            f"Received: rank={rank}"
        )
    _, b = L.factors(layer)
    if layer.lora_alpha != alpha and not (targeted and L.is_zero(b)):
        raise ValueError(
            f"Layer {path!r} has a trained LoRA adapter with alpha={layer.lora_alpha}; "
            "changing alpha would change its outputs. Expected "
            f"alpha={layer.lora_alpha}. Received: alpha={alpha}"
        )


def _patterns(target_layers):
    if target_layers is None:
        return None
    listed = [target_layers] if isinstance(target_layers, (str, re.Pattern)) else target_layers
    if not isinstance(listed, (list, tuple)) or not listed:
        raise TypeError(
            "`target_layers` must be None, a pattern (str or re.Pattern) or a non-empty list "
            f"of patterns. Received: target_layers={target_layers!r}"
        )
    patterns = []
    for pattern in listed:
        if not isinstance(pattern, (str, re.Pattern)):
            raise TypeError(
                "`target_layers` must hold patterns (str or re.Pattern). Received: "
                f"target_layers={target_layers!r}"
            )
        try:
            patterns.append(re.compile(pattern))
        except re.error as error:
            raise ValueError(
                f"`target_layers` holds an invalid regular expression {pattern!r}: {error}. "
                f"Received: target_layers={target_layers!r}"
            ) from None
    return patterns


def _selected(path, layer, patterns):
    if not isinstance(layer, L.ADAPTABLE):
        return False
    return patterns is None or any(p.search(path) for p in patterns)


def _nothing_matches(model, layers, target_layers):
    adaptable = [(p, layer) for p, layer in layers if isinstance(layer, L.ADAPTABLE)]
    if not adaptable:
        return (
            f"{model.name!r} has no layer LoRA can adapt ({L.ADAPTABLE_NAMES}). Its "
            f"layers: {L.some_paths(layers)}"
        )
    return (
        f"No {L.ADAPTABLE_NAMES} layer of {model.name!r} has a path that matches "
        f"`target_layers` (re.search). Expected a pattern found in one of: "
        f"{L.some_paths(adaptable)}. Received: target_layers={target_layers!r}"
    )
