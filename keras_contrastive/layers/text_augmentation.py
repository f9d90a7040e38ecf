"""`TextAugmentation`: random views of tokenized text for contrastive learning."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.ops import _validation as v


@keras.saving.register_keras_serializable(package="keras_contrastive")
class TextAugmentation(keras.layers.Layer):
    """Makes a random view of token ids: span crop, token dropout and masking.

    Works on the output of `TextPreprocessor`. Each example independently:

    1. **span crop**: keeps a random contiguous span of its content tokens (all
       tokens but padding and `special_token_ids`), of a length drawn uniformly
       between `min_span_fraction` and all of them (DeCLUTR, Giorgi et al.,
       2021; "span deletion" in CLEAR, Wu et al., 2020);
    2. **token dropout**: deletes each remaining content token with probability
       `dropout_rate` (EDA's random deletion, Wei & Zou, 2019);
    3. re-packs the kept tokens to the left (special tokens stay in place
       relative to the text: `[START]` first, `[END]` last) and pads the rest;
    4. **masking**: replaces each kept content token with `mask_token_id` with
       probability `mask_rate` (BERT's masking, Devlin et al., 2019).

    Padding and special tokens are never dropped or masked; the shape is kept.
    Randomness comes from the layer's `SeedGenerator`, or from the `seed`
    argument of `call` (e.g. a per-replica seed). With `training=False` the
    inputs are returned unchanged.

    Args:
        dropout_rate: float in [0, 1], the probability that a content token is
            deleted. Defaults to `0.1` (EDA).
        mask_rate: float in [0, 1], the probability that a kept content token is
            masked. Defaults to `0.15` (BERT).
        min_span_fraction: float in [0, 1], the smallest fraction of the content
            tokens the span crop keeps (at least one token is kept); `1.0`
            disables cropping. Defaults to `0.5`.
        mask_token_id: int, the id of the mask token. Defaults to `4`, the id
            of `[MASK]` in `TextPreprocessor.from_corpus` vocabularies (use
            `preprocessor.mask_token_id` otherwise).
        special_token_ids: tuple of ints, ids that are never dropped or masked,
            typically the start and end tokens. Defaults to `(2, 3)` (`[START]`
            and `[END]` in `from_corpus` vocabularies).
        pad_token_id: int, the id written into padding. Defaults to `0`.
        seed: int or `None`, the seed of the layer's `SeedGenerator`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Shape:
        Input: a dict with `"token_ids"` (int, `(batch_size, sequence_length)`,
        or `(sequence_length,)` for one example) and `"padding_mask"` (bool, same
        shape, `True` on real tokens). Output: the same structure, shapes and
        dtypes.

    Example:

    >>> augment = TextAugmentation(seed=1)
    >>> tokens = {"token_ids": keras.ops.convert_to_tensor([[2, 7, 8, 9, 3, 0]]),
    ...           "padding_mask": keras.ops.convert_to_tensor([[1, 1, 1, 1, 1, 0]]) > 0}
    >>> view = augment(tokens, training=True)

    References:
        - Wei & Zou, 2019. "EDA: Easy Data Augmentation Techniques for Boosting
          Performance on Text Classification Tasks". https://arxiv.org/abs/1901.11196
        - Wu et al., 2020. "CLEAR: Contrastive Learning for Sentence
          Representation". https://arxiv.org/abs/2012.15466
        - Giorgi et al., 2021. "DeCLUTR: Deep Contrastive Learning for
          Unsupervised Textual Representations". https://arxiv.org/abs/2006.03659
        - Devlin et al., 2019. "BERT: Pre-training of Deep Bidirectional
          Transformers for Language Understanding". https://arxiv.org/abs/1810.04805
    """

    def __init__(
        self,
        dropout_rate=0.1,
        mask_rate=0.15,
        min_span_fraction=0.5,
        mask_token_id=4,
        special_token_ids=(2, 3),
        pad_token_id=0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dropout_rate = v.check_probability("dropout_rate", dropout_rate)
        self.mask_rate = v.check_probability("mask_rate", mask_rate)
        self.min_span_fraction = v.check_probability("min_span_fraction", min_span_fraction)
        self.mask_token_id = v.check_int("mask_token_id", mask_token_id, min=0)
        self.pad_token_id = v.check_int("pad_token_id", pad_token_id, min=0)
        if not isinstance(special_token_ids, (tuple, list)):
            raise TypeError(
                "`special_token_ids` must be a tuple of non-negative ints. "
                f"Received: special_token_ids={special_token_ids!r}"
            )
        self.special_token_ids = tuple(
            v.check_int("special_token_ids", i, min=0) for i in special_token_ids
        )
        self.seed = v.check_seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.built = True

    def call(self, inputs, training=True, seed=None):
        token_ids, padding_mask = _check_tokens(inputs)
        if not training:
            return {"token_ids": token_ids, "padding_mask": padding_mask}
        if len(token_ids.shape) == 1:  # one example, e.g. in `tf.data` before batching
            out = self.call(
                {"token_ids": token_ids[None], "padding_mask": padding_mask[None]},
                training=training,
                seed=seed,
            )
            return {key: value[0] for key, value in out.items()}
        if seed is None:
            seed = self.seed_generator.next()
        batch_size, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        # One draw per example: 2 for the span, `length` each for dropout/masking.
        # Stateless TF sampling, so that `seed` may be a tensor (per replica).
        noise = tf.random.stateless_uniform(
            (batch_size, 2 + 2 * length), seed=ops.cast(seed, "int32")
        )
        span_noise, drop_noise, mask_noise = (
            noise[:, :2],
            noise[:, 2 : 2 + length],
            noise[:, 2 + length :],
        )
        special = self._is_special(token_ids) & padding_mask
        content = padding_mask & ~special
        keep = content & _random_span(content, span_noise, self.min_span_fraction)
        keep = keep & (drop_noise >= self.dropout_rate)
        token_ids, padding_mask = _pack_left(token_ids, keep | special)
        content = padding_mask & ~self._is_special(token_ids)
        masked = content & (mask_noise < self.mask_rate)
        token_ids = ops.where(masked, self.mask_token_id, token_ids)
        token_ids = ops.where(padding_mask, token_ids, self.pad_token_id)
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def _is_special(self, token_ids):
        special = ops.zeros_like(token_ids, dtype="bool")
        for token_id in self.special_token_ids:
            special = special | (token_ids == token_id)
        return special

    def compute_output_spec(self, inputs, training=True, seed=None):
        return {
            key: keras.KerasTensor(value.shape, dtype=value.dtype) for key, value in inputs.items()
        }

    def get_config(self):
        return {
            **super().get_config(),
            "dropout_rate": self.dropout_rate,
            "mask_rate": self.mask_rate,
            "min_span_fraction": self.min_span_fraction,
            "mask_token_id": self.mask_token_id,
            "special_token_ids": list(self.special_token_ids),
            "pad_token_id": self.pad_token_id,
            "seed": self.seed,
        }


def _check_tokens(inputs):
    """Returns `(token_ids, padding_mask)` from the dict, or raises naming `inputs`."""
    if not isinstance(inputs, dict) or set(inputs) != {"token_ids", "padding_mask"}:
        raise ValueError(
            '`inputs` must be a dict with keys "token_ids" and "padding_mask" '
            "(the output of TextPreprocessor). "
            f"Received: inputs={sorted(inputs) if isinstance(inputs, dict) else inputs}"
        )
    token_ids = ops.convert_to_tensor(inputs["token_ids"])
    padding_mask = ops.convert_to_tensor(inputs["padding_mask"])
    shape = tuple(token_ids.shape)
    if len(shape) not in (1, 2) or shape != tuple(padding_mask.shape):
        raise ValueError(
            '`inputs["token_ids"]` and `inputs["padding_mask"]` must both have '
            "shape (batch_size, sequence_length) or (sequence_length,). Received: "
            f"shapes {shape} and {tuple(padding_mask.shape)}"
        )
    if "int" not in keras.backend.standardize_dtype(token_ids.dtype):
        raise TypeError(f'`inputs["token_ids"]` must be integer. Received: dtype={token_ids.dtype}')
    return token_ids, ops.cast(padding_mask, "bool")


def _random_span(content, noise, min_fraction):
    """A mask of one random contiguous span of the `content` positions per row.

    The span covers `ceil(f * n)` of the `n` content tokens, with
    `f ~ U[min_fraction, 1]` from `noise[:, 0]` and the start from `noise[:, 1]`.
    """
    n = ops.sum(ops.cast(content, "float32"), axis=1)
    fraction = min_fraction + (1.0 - min_fraction) * noise[:, 0]
    span = ops.maximum(ops.ceil(fraction * n), ops.minimum(n, 1.0))
    start = ops.floor(noise[:, 1] * (n - span + 1.0))
    rank = ops.cumsum(ops.cast(content, "float32"), axis=1) - 1.0
    start, end = start[:, None], (start + span)[:, None]
    return (rank >= start) & (rank < end)


def _pack_left(token_ids, keep):
    """Moves the kept tokens of each row to the left, in order; pads the rest."""
    length = ops.shape(token_ids)[1]
    position = ops.arange(length, dtype="int32")[None, :]
    order = ops.argsort(ops.where(keep, position, position + length), axis=1)
    token_ids = ops.take_along_axis(token_ids, order, axis=1)
    count = ops.sum(ops.cast(keep, "int32"), axis=1, keepdims=True)
    return token_ids, position < count
