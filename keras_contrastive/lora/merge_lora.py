"""`merge_lora`: folds the LoRA update into the kernels and removes the adapters."""

from keras import ops

from keras_contrastive.lora import _layers as L


def merge_lora(model):
    """Folds `W + (alpha / rank) · A · B` into each adapted layer's kernel and drops A, B.

    Afterwards the layers are plain layers: `lora_enabled` is `False`, the
    factor variables are no longer in `model.weights`, the config has no
    `lora_rank` (a saved model reloads without adapters), and the outputs are
    those of the adapted model (up to float rounding). The merge runs in
    float32 and is cast to the kernel's dtype. A conv kernel
    `(..., c_in, c_out)` gets `A · B` of `A (..., c_in, rank)` and
    `B (rank, c_out)`, as Keras' own conv `kernel` computes it; an
    `Embedding` merges into its `embeddings`.

    The merged kernels are left **trainable** (as in a plain model); every
    other variable keeps the flag `enable_lora` gave it (frozen), so set
    `model.trainable = True` to train all of it. The optimizer of a compiled
    model was built for the factors: compile again before training. To keep
    the adapted model as it is, merge a copy, or export with
    `kc.export.export_encoder(..., merge_lora=True)` (the default), which
    merges a copy.

    Args:
        model: a built `keras.Model` or layer with LoRA layers.

    Returns:
        The paths of the merged layers (see `kc.lora.enable_lora`); `[]` when
        `model` has no LoRA layers.

    Example:

    >>> import keras, numpy as np, keras_contrastive as kc
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="out")])
    >>> _ = kc.lora.enable_lora(model, rank=2)
    >>> layer = model.get_layer("out")
    >>> layer.lora_kernel_b.assign(np.ones((2, 4)))  # as if trained
    >>> x = np.ones((1, 8), "float32")
    >>> adapted = model(x)
    >>> kc.lora.merge_lora(model)
    ['out']
    >>> np.allclose(model(x), adapted, atol=1e-5), len(model.weights)
    (True, 2)
    """
    L.check_model(model)
    layers = L.adapted(model)
    for path, layer in layers:
        if getattr(layer, "quantization_mode", None) is not None:
            raise ValueError(
                f"Layer {path!r} is quantized ({layer.quantization_mode!r}); merge_lora "
                "merges float kernels only."
            )
    for _, layer in layers:
        _merge(layer)
    L.forget_traced_functions(model)
    return [path for path, _ in layers]


def _merge(layer):
    weight = L.base_weight(layer)
    weight.assign(ops.cast(L.merged_weight(layer), weight.dtype))
    weight.trainable = True
    layer.lora_enabled = False  # now `kernel` / `embeddings` is the variable itself
    for name, factor in zip(L.factor_names(layer), L.factors(layer), strict=True):
        # What Keras' `Layer.__delattr__` does, without its `gc.collect()` per
        # variable (0.4 s each, measured): a BERT-base merge would take a minute.
        layer._untrack_variable(factor)
        object.__delattr__(layer, name)
    layer.lora_rank = None
    layer.lora_alpha = None
    L.remove_load_hook(layer)
