"""The layers LoRA adapts, how they are found by path, and their factor variables.

A layer's **path** is the `/`-joined names of the layers that lead to it from
the model given (the model's own name excluded), e.g.
`"transformer_layer_0/self_attention_layer/query"`. It equals Keras'
`layer.path` for a model built in one go, but it is stable where
`layer.path` is not: a reloaded nested model reports `layer.path` without its
parent (measured with Keras 3.15: `"inner/dense_1"` becomes `"dense_1"`), while
names come back from the config. A model that is itself one of the adaptable
layers has its own name as path.
"""

import contextlib

import keras
from keras import ops

# Keras 3.15 gives these (and their subclasses) `enable_lora(rank, lora_alpha, ...)`.
ADAPTABLE = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Embedding,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)
NORMALIZATION = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.RMSNormalization,
)
ADAPTABLE_NAMES = "Dense, EinsumDense, Embedding, Conv1D, Conv2D, Conv3D"
# The factor initializer of Keras' `enable_lora` (layers/core/dense.py `enable_lora`).
A_INITIALIZER = "he_uniform"


def walk(model):
    """`(path, layer)` for `model` and every layer under it, parents first, each once."""
    found, seen = [], set()

    def visit(layer, path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append((path, layer))
        # Keras keeps the sublayers a layer tracks in `_layers` (what its own
        # `_flatten_layers` walks); a plain Layer has no public list of them.
        for child in layer._layers:
            if not isinstance(child, keras.layers.InputLayer):
                visit(child, f"{path}/{child.name}" if path else child.name)

    visit(model, model.name if isinstance(model, ADAPTABLE) else "")
    return found


def is_adapted(layer):
    """Whether `layer` is an adaptable layer with LoRA enabled."""
    return isinstance(layer, ADAPTABLE) and bool(getattr(layer, "lora_enabled", False))


def adapted(model):
    """`(path, layer)` of the LoRA-enabled layers under `model`."""
    return [(path, layer) for path, layer in walk(model) if is_adapted(layer)]


def factor_names(layer):
    """The attribute names of `layer`'s factors A and B, as Keras' `enable_lora` sets them."""
    if isinstance(layer, keras.layers.Embedding):
        return "lora_embeddings_a", "lora_embeddings_b"
    return "lora_kernel_a", "lora_kernel_b"


def factors(layer):
    """`(A, B)`, the factor variables of an adapted `layer`."""
    a, b = factor_names(layer)
    return getattr(layer, a), getattr(layer, b)


def factor_shapes(layer, rank):
    """The shapes of A and B of rank `rank` for `layer`: `W.shape[:-1] + (rank,)`, `(rank, d_out)`.

    As Keras' `enable_lora` makes them (a Dense or Embedding weight `(d_in, d_out)`,
    a conv kernel `(..., c_in, c_out)`, an EinsumDense kernel `(..., d_out)`).
    """
    weight = layer.embeddings if isinstance(layer, keras.layers.Embedding) else layer.kernel
    shape = tuple(weight.shape)
    return shape[:-1] + (rank,), (rank, shape[-1])


def base_weight(layer):
    """The variable `W` of an adapted `layer`: what Keras' `kernel` / `embeddings` adds `A B` to."""
    return layer._embeddings if isinstance(layer, keras.layers.Embedding) else layer._kernel


def merged_weight(layer):
    """`W + (alpha / rank) · A · B` of an adapted `layer`, in float32: what it computes with."""
    a, b = factors(layer)
    update = ops.multiply(layer.lora_alpha / layer.lora_rank, ops.matmul(a, b))
    return ops.add(ops.cast(base_weight(layer), "float32"), ops.cast(update, "float32"))


def bias(layer):
    """The bias variable of `layer`, or `None` (Embedding, `use_bias=False`)."""
    return getattr(layer, "bias", None)


def constraint(layer):
    """The constraint on the weight LoRA adapts (Keras refuses LoRA with one)."""
    if isinstance(layer, keras.layers.Embedding):
        return layer.embeddings_constraint
    return layer.kernel_constraint


def variable_scope(model):
    """The `tf.distribute` scope `model`'s variables were made in, or a null context.

    New factors must be distributed as the kernels are: factors made outside
    the `MirroredStrategy` scope of a model built inside it are plain
    variables, and Keras' distributed optimizer update fails on them with a
    bare `AssertionError`.
    """
    for weight in model.weights:
        strategy = getattr(weight.value, "distribute_strategy", None)  # a DistributedVariable
        if strategy is not None:
            return strategy.scope()
    return contextlib.nullcontext()


def forget_traced_functions(model):
    """Drops the `fit` / `evaluate` / `predict` functions Keras traced for models under `model`.

    A traced function keeps computing as the layers did when it was traced
    (with or without adapters): the next call traces anew.
    """
    for _, layer in walk(model):
        if isinstance(layer, keras.Model):
            layer.train_function = layer.test_function = layer.predict_function = None


def is_zero(variable):
    return not bool(ops.any(ops.not_equal(variable, 0)))


def reinitialize_a(layer):
    """Draws A anew as Keras' `enable_lora` does (he_uniform); B stays as it is."""
    a, _ = factors(layer)
    a.assign(keras.initializers.get(A_INITIALIZER)(a.shape, dtype=a.dtype))


class KeepAdapterOnLoad:
    """`layer.load_own_variables` that leaves a trainable adapter where Keras zeroes it.

    Keras' `load_own_variables` loads the merged kernel that
    `save_own_variables` wrote (`W + (alpha / rank) A B`) and then assigns
    zeros to both factors (keras/src/layers/core/dense.py:363-365,
    convolutional/base_conv.py:349-350, the same in EinsumDense and
    Embedding), so a reloaded model that trains again gets zero gradients
    for both factors. After Keras' own load this draws A anew as
    `enable_lora` does, B stays zero: the outputs are those saved, and
    training moves them. Installed on the instance by `kc.lora.enable_lora`
    (a callable object, not a closure, so that a deep copy of the layer gets
    one bound to the copy).
    """

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, store):
        layer = self.layer
        type(layer).load_own_variables(layer, store)
        if is_adapted(layer) and all(is_zero(f) for f in factors(layer)):
            reinitialize_a(layer)


def install_load_hook(layer):
    object.__setattr__(layer, "load_own_variables", KeepAdapterOnLoad(layer))


def remove_load_hook(layer):
    if isinstance(vars(layer).get("load_own_variables"), KeepAdapterOnLoad):
        object.__delattr__(layer, "load_own_variables")


def check_model(model, name="model"):
    """Raises unless `model` is a built Keras layer (a `keras.Model` included)."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"`{name}` must be a keras.Model or keras.layers.Layer. Received: "
            f"{name}={model!r} of type {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"`{name}` must be built: LoRA factors are shaped like the kernels, which "
            "exist once the model is built. Call it once on a batch (or `build(input_shape)`) "
            f"first. Received: unbuilt {type(model).__name__} {model.name!r}"
        )


def some_paths(layers, limit=8):
    paths = [path for path, _ in layers if path]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{paths[:limit]}{more}"
