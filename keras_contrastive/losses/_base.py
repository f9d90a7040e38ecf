"""What every loss shares: its contract, input layout checks and the thin Loss base class."""

import dataclasses
from collections.abc import Mapping

import keras
from keras import ops

from keras_contrastive.ops import _validation as v
from keras_contrastive.ops.similarity import compute_dtype, l2_normalize

_LABELS = ("ignored", "integer", "pairs")
_Y_PRED = {"single": "(B, D)", "pair": "(B, 2, D)", "views": "(B, V, D)"}
_STATE = (
    "temperature",
    "bias",
    "negative_keys",
    "hard_negatives",
    "teacher_temperature",
    "center",
)
_SCALAR_STATE = ("temperature", "bias", "teacher_temperature")


@keras.saving.register_keras_serializable(package="keras_contrastive")
@dataclasses.dataclass(frozen=True)
class LossContract:
    """What a loss takes: the kind of `y_true`, the layout of `y_pred`, and its state.

    A training method reads the contract of the compiled loss (see
    `kc.losses.contract_of`) to decide what to feed it, and refuses a loss
    whose contract it cannot meet, quoting `describe()`.

    Args:
        labels: `"ignored"` (default): `y_true` is unused and may be None;
            `"integer"`: `(B,)` integer class or group ids; `"pairs"`: `(B,)`
            1/0 flags, 1 for a similar pair.
        y_pred: `"pair"` (default): `(B, 2, D)`; `"single"`: `(B, D)`, one
            embedding per example; `"views"`: `(B, V, D)`, any `V >= 1`.
        state: the names the loss accepts as extra entries of a dict `y_pred`
            `{"embeddings": ..., name: value}`, a subset of `("temperature",
            "bias", "negative_keys", "hard_negatives", "teacher_temperature",
            "center")`.
            Default `()`: none.

    Example:

    >>> import keras_contrastive as kc
    >>> contract = kc.losses.LossContract(labels="integer", y_pred="views", state=("temperature",))
    >>> contract.describe()
    "labels='integer', y_pred (B, V, D), state ('temperature',)"
    """

    labels: str = "ignored"
    y_pred: str = "pair"
    state: tuple = ()

    def __post_init__(self):
        v.check_choice("labels", self.labels, _LABELS)
        v.check_choice("y_pred", self.y_pred, _Y_PRED)
        state = self.state
        if isinstance(state, (str, bytes)) or not isinstance(state, (tuple, list)):
            raise ValueError(
                f"`state` must be a tuple of names from {_STATE}. Received: state={state!r}"
            )
        for name in state:
            v.check_choice("state", name, _STATE)
        if len(set(state)) != len(state):
            raise ValueError(f"`state` must not repeat a name. Received: state={state!r}")
        object.__setattr__(self, "state", tuple(state))

    def describe(self):
        """The contract in words, as the model's error messages quote it."""
        return f"labels={self.labels!r}, y_pred {_Y_PRED[self.y_pred]}, state {self.state!r}"

    def get_config(self):
        return {"labels": self.labels, "y_pred": self.y_pred, "state": list(self.state)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# Keras' own metric-learning losses (`keras.losses.Circle`): labels and one embedding each.
_KERAS_CONTRACT = LossContract(labels="integer", y_pred="single")
_UNDECLARED = object()


def contract_of(loss):
    """The `LossContract` of `loss`: its `contract` attribute, or that of a Keras loss.

    Every `kc.losses` loss declares its contract. A loss without a `contract`
    attribute is taken to be one of Keras' own metric-learning losses, such as
    `keras.losses.Circle`: `(B,)` integer labels, `(B, D)` embeddings, no state.

    Declare the contract of your own loss as a class attribute (or a property,
    where it depends on the constructor's arguments) named `contract`. A loss
    that declares state receives it as entries of a dict `y_pred`
    `{"embeddings": ..., "temperature": ...}` and must use the given values
    for that call (a learned temperature arrives as a tensor or variable).

    Args:
        loss: a `keras.losses.Loss` (or any object that a model compiles with).

    Returns:
        A `LossContract`.

    Raises:
        TypeError: if `loss.contract` is not a `LossContract`.

    Example:

    >>> import keras
    >>> import keras_contrastive as kc
    >>> class PairDistance(keras.losses.Loss):
    ...     contract = kc.losses.LossContract(labels="ignored", y_pred="pair")
    ...     def call(self, y_true, y_pred):
    ...         return keras.ops.sum(keras.ops.square(y_pred[:, 0] - y_pred[:, 1]), axis=-1)
    >>> kc.losses.contract_of(PairDistance()).describe()
    "labels='ignored', y_pred (B, 2, D), state ()"
    >>> kc.losses.contract_of(keras.losses.Circle()).labels
    'integer'
    """
    contract = getattr(loss, "contract", _UNDECLARED)
    if contract is _UNDECLARED:
        return _KERAS_CONTRACT
    if not isinstance(contract, LossContract):
        raise TypeError(
            f"`{type(loss).__name__}.contract` must be a kc.losses.LossContract. "
            f"Received: contract={contract!r}"
        )
    return contract


def views(y_pred, num_views=2, layout="(B, 2, D)", min_batch=2):
    """Checks a `(B, V, D)` stack of views, upcasts it, and checks it is finite."""
    y_pred = ops.convert_to_tensor(y_pred)
    v.check_rank("y_pred", y_pred, (3,), layout)
    if num_views is not None:
        v.check_dim("y_pred", y_pred, 1, num_views, layout)
    return embeddings(y_pred, min_batch=min_batch)


def embeddings(x, name="y_pred", min_batch=2):
    """Upcasts half-precision `x` to float32; checks its batch and finiteness.

    `min_batch=2` for the losses whose negatives are the other examples (a
    batch of 1 has none), 1 for those that carry their own (pairs, triplets).
    """
    x = ops.convert_to_tensor(x)
    x = ops.cast(x, compute_dtype(x))
    x = v.check_min_batch(name, x, min_batch, "to have negatives" if min_batch > 1 else "")
    return v.check_finite(name, x)


def own_negatives(hard_negatives, z, name="hard_negatives"):
    """`(B, H, D)` negatives of each example, checked against `z` `(B, V, D)` and normalized.

    `None` gives `(B, 0, D)`: no negatives of its own. They are cast to the
    dtype of `z` (float32 for half-precision inputs) and must be finite.
    """
    if hard_negatives is None:
        return ops.zeros((ops.shape(z)[0], 0, z.shape[-1]), z.dtype)
    x = ops.convert_to_tensor(hard_negatives)
    v.check_rank(name, x, (3,), "(B, H, D): H negatives of each of the B examples")
    v.check_dim(name, x, 2, z.shape[-1], "(B, H, D) with the embeddings' D")
    x = v.check_same_batch(name, x, "y_pred", z)
    return l2_normalize(ops.cast(embeddings(x, name, min_batch=0), z.dtype))


def integer_labels(y_true, y_pred, name="y_true"):
    """Checks `(B,)` labels matching `y_pred`'s batch; integers keep their dtype.

    Float labels are refused at the class boundary (`ContrastiveLoss.__call__`);
    the pure functions accept them and cast them to int32.
    """
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    v.check_rank(name, y_true, (1,), "(B,)")
    y_true = v.check_same_batch(name, y_true, "y_pred", y_pred)
    if not ops.is_tensor(y_true) or "int" not in str(y_true.dtype):
        y_true = ops.cast(y_true, "int32")
    return y_true


class ContrastiveLoss(keras.losses.Loss):
    """Base class: a `keras.losses.Loss` over a pure per-example function.

    Subclasses declare `contract` (a `LossContract`), store their arguments,
    list them in `get_config`, and in `call` read the state of the call with
    `embeddings, state = self._split_state(y_pred)`, e.g.
    `state.get("temperature", self.temperature)`: state arrives as input and
    is never assigned to the loss. Integer labels are checked here and reach
    `call` as the user's integers: `keras.losses.Loss.__call__` casts `y_true`
    to the loss dtype, and float32 rounds ids >= 2**24 together. `y_true=None`
    is accepted where labels are ignored.
    """

    contract = LossContract()

    def __call__(self, y_true, y_pred, sample_weight=None):
        x, _ = self._split_state(y_pred)
        labels = self.contract.labels
        labels_used = labels != "ignored" and self._labels_used(x)
        if y_true is None:
            if labels_used:
                raise ValueError(
                    f"{type(self).__name__} needs labels: `y_true` must be (B,) "
                    "class ids. Received: y_true=None"
                )
            y_true = ops.zeros(ops.shape(x)[:1], "int32")
        integer = labels_used and labels == "integer"
        if integer:
            v.check_integer_labels("y_true", y_true)
        with keras.name_scope(self.name):
            converted = keras.tree.map_structure(
                lambda x: ops.convert_to_tensor(x, dtype=self.dtype), y_pred
            )
            y_true = ops.convert_to_tensor(y_true, dtype=None if integer else self.dtype)
            values = self.call(y_true, converted)
        reduction = _Reduction(name=self.name, reduction=self.reduction, dtype=self.dtype)
        return reduction(values, x, sample_weight)

    def _labels_used(self, y_pred):
        return True

    def _split_state(self, y_pred):
        """`(embeddings, state)` of a `y_pred` given as a tensor or as a dict.

        A dict holds `"embeddings"` and any of the names in `contract.state`;
        a tensor is the embeddings, with no state.
        """
        if not isinstance(y_pred, Mapping):
            return y_pred, {}
        accepted = ("embeddings", *self.contract.state)
        unknown = [key for key in y_pred if key not in accepted]
        if unknown or "embeddings" not in y_pred:
            raise ValueError(
                f"{type(self).__name__} takes `y_pred` as its embeddings or as a dict "
                f"with the key 'embeddings' and optionally {self.contract.state}: the "
                f"accepted keys are {accepted}. Received keys: {list(y_pred)}"
            )
        state = {key: value for key, value in y_pred.items() if key != "embeddings"}
        for name in _SCALAR_STATE:
            shape = getattr(state.get(name), "shape", ())
            if len(shape) != 0:
                raise ValueError(
                    f"`y_pred[{name!r}]` must be a scalar. Received: shape={tuple(shape)}"
                )
        return y_pred["embeddings"], state


class _Reduction(keras.losses.Loss):
    """Keras' own reduction (sample weights, masks, replica scaling) of given values.

    Called as `(values, y_pred, sample_weight)`: `y_pred` is passed only for
    its Keras mask, as `keras.losses.Loss.__call__` reads it.
    """

    def call(self, values, y_pred):
        return values
