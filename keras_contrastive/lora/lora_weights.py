"""`save_lora_weights` / `load_lora_weights`: adapters as small files, several per base model."""

import json
import os

import numpy as np

from keras_contrastive._atomic import atomic_file
from keras_contrastive.lora import _layers as L
from keras_contrastive.lora.enable_lora import apply_lora_spec, check_spec, lora_spec

FORMAT = "keras_contrastive.lora/1"


def save_lora_weights(model, path):
    """Writes the LoRA factors of `model`, and its spec, to a small `.npz` file.

    The file holds, for each adapted layer, its factors `A` and `B` (and its
    bias when the adapter trains biases, `train_bias=True`), and the spec
    of `kc.lora.lora_spec`: rank, alpha, layer paths, train_bias. Not the
    base weights: `rank · (d_in + d_out)` numbers per layer instead of
    `d_in · d_out`, so one base model can carry several adapters, loaded with
    `kc.lora.load_lora_weights`. The write is atomic
    (`keras_contrastive._atomic.atomic_file`): a process killed while writing
    leaves the previous file, complete.

    Args:
        model: a `keras.Model` or layer with LoRA layers (`kc.lora.enable_lora`).
        path: the file to write (local filesystem); `.npz` by convention.

    Example:

    >>> import keras, keras_contrastive as kc
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> _ = kc.lora.enable_lora(model, rank=2)
    >>> kc.lora.save_lora_weights(model, "adapter.npz")
    """
    spec = lora_spec(model)
    if spec is None:
        raise ValueError(
            f"{model.name!r} has no LoRA layers to save: call "
            "`kc.lora.enable_lora(model, rank)` first."
        )
    layers = dict(L.walk(model))
    arrays = {"spec": np.array(json.dumps({"format": FORMAT, **spec}))}
    for i, layer_path in enumerate(spec["paths"]):
        layer = layers[layer_path]
        a, b = L.factors(layer)
        arrays[f"a_{i}"], arrays[f"b_{i}"] = np.asarray(a), np.asarray(b)
        if spec["train_bias"] and L.bias(layer) is not None:
            arrays[f"bias_{i}"] = np.asarray(L.bias(layer))
    with atomic_file(path) as new, open(new, "wb") as file:
        np.savez(file, **arrays)


def load_lora_weights(model, path):
    """Loads an adapter written by `kc.lora.save_lora_weights` into `model`.

    - Onto the base model **without** LoRA (a fresh copy of the model the
      adapter was trained on): LoRA is enabled from the file's spec first
      (rank, alpha, layers, train_bias, with the freezing of
      `kc.lora.enable_lora`), then the factors are loaded.
    - Onto a model **with** LoRA of the same rank on the same layers (and the
      same `train_bias`): the factors (and biases, with `train_bias`) are
      replaced and `alpha` is set, so adapters can be swapped on one base.

    Everything is checked before anything changes.

    Args:
        model: a built `keras.Model` or layer: the base model, or one adapted
            like the saved one.
        path: a file written by `save_lora_weights`.

    Returns:
        The paths of the loaded layers.

    Raises:
        ValueError: when the file is not such a file, or the model's LoRA
            rank, layers or `train_bias` differ from the file's, or a layer's
            factor shapes do not match (expected and received are named).

    Example:

    >>> import keras, keras_contrastive as kc
    >>> def base():
    ...     keras.utils.set_random_seed(0)
    ...     return keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> tuned = base()
    >>> _ = kc.lora.enable_lora(tuned, rank=2)
    >>> kc.lora.save_lora_weights(tuned, "adapter.npz")
    >>> kc.lora.load_lora_weights(base(), "adapter.npz")
    ['out']
    """
    L.check_model(model)
    spec, arrays = _read(path)
    source = f"file {os.fspath(path)!r}"
    current = lora_spec(model)
    if current is not None:
        _check_same_adapter(model, current, spec, path)
    layers = dict(L.walk(model))
    missing = [p for p in spec["paths"] if not isinstance(layers.get(p), L.ADAPTABLE)]
    if missing:
        raise ValueError(
            f"The LoRA {source} names layers that {model.name!r} does not have (or that are "
            f"not {L.ADAPTABLE_NAMES}): {missing}. Its layers: {L.some_paths(L.walk(model))}"
        )
    for i, layer_path in enumerate(spec["paths"]):
        _check_shapes(layers[layer_path], layer_path, spec["rank"], arrays, i, source)
    if current is None:
        apply_lora_spec(model, spec, source=source)
    for i, layer_path in enumerate(spec["paths"]):
        layer = layers[layer_path]
        a, b = L.factors(layer)
        a.assign(arrays[f"a_{i}"])
        b.assign(arrays[f"b_{i}"])
        if f"bias_{i}" in arrays:
            L.bias(layer).assign(arrays[f"bias_{i}"])
        layer.lora_alpha = spec["alpha"]
    return list(spec["paths"])


def _check_shapes(layer, layer_path, rank, arrays, i, source):
    """Raises unless the file's factors (and bias) of layer `i` fit `layer`."""
    expected = dict(zip(("a", "b"), L.factor_shapes(layer, rank), strict=True))
    if f"bias_{i}" in arrays:
        if L.bias(layer) is None:
            expected["bias"] = None
        else:
            expected["bias"] = tuple(L.bias(layer).shape)
    for name, shape in expected.items():
        received = arrays[f"{name}_{i}"].shape
        if shape != received:
            raise ValueError(
                f"The LoRA {source} does not fit layer {layer_path!r}: its `{name}` must have "
                f"shape {shape} (from the layer's weights), the file's has {received}. "
                "Expected a file saved from this base model."
            )


def _read(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No LoRA adapter file at {os.fspath(path)!r}.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        spec = json.loads(str(arrays.pop("spec")))
        if spec.pop("format") != FORMAT:
            raise ValueError
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        raise ValueError(
            f"{os.fspath(path)!r} is not a LoRA adapter file written by "
            "`kc.lora.save_lora_weights`."
        ) from None
    spec = check_spec(spec, source=f"file {os.fspath(path)!r}")
    for i in range(len(spec["paths"])):
        if f"a_{i}" not in arrays or f"b_{i}" not in arrays:
            raise ValueError(f"The LoRA file {os.fspath(path)!r} lacks the factors of layer {i}.")
    return spec, arrays


def _check_same_adapter(model, current, spec, path):
    for key in ("rank", "paths", "train_bias"):
        if current[key] != spec[key]:
            raise ValueError(
                f"{model.name!r} has a LoRA adapter that differs from the one in "
                f"{os.fspath(path)!r} in `{key}`. Expected {key}={spec[key]!r} (the file's), "
                f"received the model's {key}={current[key]!r}. Load it onto the base model "
                "without LoRA, or onto one adapted with the file's spec."
            )
