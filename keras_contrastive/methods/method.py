"""The training-method contract: how one batch becomes the loss's `(y_true, y_pred)`."""

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.losses import contract_of
from keras_contrastive.methods._data import stack_pair, structure_error


@dataclasses.dataclass
class Prepared:
    """A batch read, checked and augmented, before the towers run.

    What `Method.prepare` returns: `Method.towers` embeds its `inputs`, and
    `Method.finish` makes the batch's `Step` from it.

    Example:

    >>> import keras, numpy as np
    >>> import keras_contrastive as kc
    >>> encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = kc.ContrastiveModel(encoder=encoder)
    >>> x = np.ones((4, 8), "float32")
    >>> prepared = kc.methods.TwoView().prepare(model, ((x, x),), training=True, seed=None)
    >>> tuple(prepared.inputs.shape), prepared.y_true
    ((4, 2, 8), None)
    """

    inputs: object  # what `Method.towers` embeds; every tensor batch-major, (B, ...)
    y_true: object = None  # the loss's y_true, or None
    sample_weight: object = None
    labels: object = None  # (B,) class labels for the online probe, or None


@dataclasses.dataclass
class Step:
    """What a method made of one batch: the loss's and the metrics' inputs.

    `model.forward(data, training)` returns one; the model's step passes
    `y_true`, `y_pred` and `sample_weight` to the loss and `embeddings` to
    the metrics.

    Example:

    >>> import keras, numpy as np
    >>> import keras_contrastive as kc
    >>> encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = kc.ContrastiveModel(encoder=encoder)
    >>> model.compile(optimizer="adam", loss=kc.losses.NTXentLoss())
    >>> x = np.ones((4, 8), "float32")
    >>> step = model.forward(((x, x),), training=False)
    >>> tuple(step.embeddings.shape), step.y_true
    ((4, 2, 4), None)
    """

    y_true: object  # the loss's `y_true` (None where the loss ignores labels)
    y_pred: object  # the loss's `y_pred`: `embeddings`, or a dict of them and the state
    embeddings: object  # what the metrics score: (B, V, D) or (B, D)
    sample_weight: object = None
    labels: object = None  # (B,) class labels for the online probe
    representation: object = None  # (B, R) encoder output for the online probe
    probe_logits: object = None  # (B, classes), set by the model's online probe


def rank_2(name, x):
    if len(x.shape) != 2:
        raise ValueError(
            f"`{name}` must output (batch, dim) embeddings (rank 2). "
            f"Received output shape: {tuple(x.shape)}"
        )
    return x


def project(encoder, head, x, training):
    """`(representation, projection)` of `x` through one encoder and its optional head."""
    representation = encoder(x, training=training)
    if head is None:
        return representation, rank_2("encoder", representation)
    return representation, rank_2("projection_head", head(representation, training=training))


def input_views(model, x, data, layout, seed, min_views=2):
    """`(B, V, ...)` views of a batch's `x`.

    The given `(view_1, view_2)`; else the model's `augmenter`'s views of `x`
    (2); else, where `min_views=1`, `x` itself as the one view.
    """
    if isinstance(x, (tuple, list)):
        return stack_pair(("view_1", "view_2"), x, data, layout)
    if isinstance(x, dict):
        raise structure_error(layout, data)
    if model.augmenter is not None:
        return model.make_views(x, seed=seed)
    if min_views == 1:
        return ops.expand_dims(x, 1)
    raise structure_error(
        layout,
        data,
        "Without an `augmenter` the two views come from the dataset: "
        "yield `((view_1, view_2),)`, or pass `augmenter=` to the model.",
    )


def embed_views(model, views, training):
    """`(B, V, ...)` views through the model's encoder and head, as one batch of B·V.

    Returns `{"embeddings": (B, V, D), "representation": (B, R)}`, the
    representation of the first view (for the online probe).
    """
    num_views = views.shape[1]
    flat = ops.reshape(views, (-1, *ops.shape(views)[2:]))
    representation, projection = project(model.encoder, model.projection_head, flat, training)
    representation = ops.reshape(representation, (-1, num_views, representation.shape[-1]))
    return {
        "embeddings": ops.reshape(projection, (-1, num_views, projection.shape[-1])),
        "representation": representation[:, 0],
    }


def check_takes_hard_negatives(loss):
    """Raises `ValueError` unless `loss` takes per-example negatives as its state."""
    if "hard_negatives" not in contract_of(loss).state:
        raise ValueError(
            'The batch has "hard_negatives", which the loss must take as its state: '
            f"{type(loss).__name__} declares {contract_of(loss).describe()}. Use a loss "
            "that takes them (CLIPLoss, InfoNCELoss, NTXentLoss, SupConLoss), or drop them."
        )


def per_example(embed, items, training):
    """`(B, H, D)` embeddings of `(B, H, ...)` items (or a structure of them), by `embed`."""
    first = tf.nest.flatten(items)[0]
    batch, count = ops.shape(first)[0], first.shape[1]
    if len(first.shape) < 2 or count is None:
        raise ValueError(
            "`hard_negatives` must be (B, H, ...): H items of each example, with H "
            f"known. Received: shape={tuple(first.shape)}"
        )
    flat = tf.nest.map_structure(lambda t: ops.reshape(t, (-1, *ops.shape(t)[2:])), items)
    embedded = embed(flat, training=training)
    return ops.reshape(embedded, (batch, count, embedded.shape[-1]))


class Method(keras.layers.Layer):
    """Base class of the training methods of `kc.ContrastiveModel`.

    A method turns one batch into the `(y_true, y_pred)` of the compiled loss,
    in the three parts that Keras' `train_step` runs and that gradient caching
    runs separately:

    1. `prepare(model, data, training, seed)`: unpack the batch (Keras' rule:
       `x`, `(x, y)` or `(x, y, sample_weight)`), check it against `layout`
       and augment it, once per batch. Returns a `Prepared`.
    2. `towers(model, inputs, training)`: embed prepared inputs (the whole
       batch, or a sub-batch under gradient caching). Returns a dict with
       `"embeddings"` (what the loss's gradient flows back through) and
       optionally `"representation"` (the encoder output, for the probe).
       The default runs `(B, V, ...)` views through the model's `encoder`
       and `projection_head`.
    3. `finish(model, prepared, embedded)`: the `Step` of the whole batch:
       `y_true`, and `y_pred` as the embeddings or, where the method holds
       state the loss takes (a learned temperature, a queue of negatives), a
       dict `{"embeddings": ..., "temperature": ..., ...}`.

    After the optimizer step the model calls `after_step(model, step)` (a
    momentum update, a queue write). A method declares what it needs of the
    loss (`labels`, `y_pred` and the state from `state_names`, compared with
    the loss's `kc.losses.LossContract` by `check`), its default loss and its
    default metrics. The model's towers (`model.encoder`,
    `model.projection_head`, `model.augmenter`, or the dual encoder's) are
    read from `model`; layers of the method's own (a key encoder, a
    predictor) are built in `attach(model)` and saved with the model.

    A new method is a subclass in a file of its own; the model needs no
    change: `kc.ContrastiveModel(encoder=..., method=MyMethod())`.

    Example:

    >>> import keras_contrastive as kc
    >>> method = kc.methods.TwoView()
    >>> method.check(None, kc.losses.NTXentLoss())
    >>> isinstance(method.default_loss(), kc.losses.NTXentLoss)
    True
    """

    #: The batch layout, in words: the errors for any other batch quote it.
    layout = ""
    #: The `LossContract.labels` values this method can feed.
    labels = ("ignored",)
    #: The `LossContract.y_pred` layouts this method can feed.
    y_pred = ("pair",)

    def attach(self, model):
        """Builds the method's own layers from the model's towers. Default: nothing."""

    def default_loss(self):
        """The loss `compile` uses when given none. Default: none, so `loss=` is required."""
        raise ValueError(
            f"{type(self).__name__} has no default loss: pass `loss=` to `compile`, a "
            "keras.losses.Loss whose kc.losses.LossContract this method can feed."
        )

    def default_metrics(self):
        """The metrics reported when `compile` is given none of the same name."""
        return []

    def state_names(self, model):
        """The names of the state this method passes to the loss (see `finish`)."""
        return ()

    def check(self, model, loss):
        """Raises `ValueError` unless `loss` declares a contract this method can feed."""
        contract = contract_of(loss)
        missing = [name for name in self.state_names(model) if name not in contract.state]
        if contract.labels in self.labels and contract.y_pred in self.y_pred and not missing:
            return
        needs = ""
        if model is not None and self.state_names(model):
            needs = f", taking state {tuple(self.state_names(model))}"
        raise ValueError(
            f"{type(self).__name__} trains with a loss whose "
            f"kc.losses.LossContract has labels in {self.labels} and y_pred in "
            f"{self.y_pred}{needs}. {type(loss).__name__} declares {contract.describe()}. "
            "Pick a loss of that contract, or another method (kc.methods)." + self.loss_hint(model)
        )

    def loss_hint(self, model):
        """A sentence added to `check`'s error, e.g. naming the loss that fits. Default: none."""
        return ""

    def prepare(self, model, data, training, seed):
        raise NotImplementedError(f"{type(self).__name__} must define `prepare()`.")

    def towers(self, model, inputs, training):
        """Default: `(B, V, ...)` views through the model's `encoder` and `projection_head`."""
        return embed_views(model, inputs, training)

    def finish(self, model, prepared, embedded):
        """The `Step` of a batch; default: the embeddings as `y_pred`, no state."""
        embeddings = embedded["embeddings"]
        return Step(
            prepared.y_true,
            embeddings,
            embeddings,
            prepared.sample_weight,
            prepared.labels,
            embedded.get("representation") if prepared.labels is not None else None,
        )

    def after_step(self, model, step):
        """Runs after the optimizer step, in the step's graph. Default: nothing."""

    def forward(self, model, data, training, seed=None):
        """`finish(prepare(batch), towers(inputs))`: one batch, all at once."""
        prepared = self.prepare(model, data, training, seed)
        return self.finish(model, prepared, self.towers(model, prepared.inputs, training))

    def call(self, inputs):
        raise NotImplementedError(
            f"A {type(self).__name__} is run by ContrastiveModel's steps, not called."
        )


def with_state(embeddings, **state):
    """The loss's `y_pred`: `embeddings`, or a dict of them and the non-None state."""
    state = {name: value for name, value in state.items() if value is not None}
    return {"embeddings": embeddings, **state} if state else embeddings
