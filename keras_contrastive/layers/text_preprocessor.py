"""`TextPreprocessor`: in-graph tokenization of raw strings with tensorflow-text."""

import collections
import collections.abc

import keras
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib

from keras_contrastive.ops._validation import check_bool, check_choice, check_int

TOKENIZERS = ("wordpiece", "whitespace")
NORMALIZATION_FORMS = ("NFC", "NFKC", "NFD", "NFKD")
# Punctuation and symbols are split off as words of their own (as BERT does).
_PUNCTUATION = r"[\p{P}\p{S}]"
_DELIMITER = r"\s+|" + _PUNCTUATION


def normalize_text(texts, lower_case=True, normalization_form="NFKC"):
    """Unicode-normalizes and (BERT-uncased style) lower-cases a string tensor.

    `normalization_form` is applied first; `lower_case` then case-folds, and
    strips accents by decomposing (NFD) and dropping the combining marks.
    """
    if normalization_form is not None:
        texts = tf_text.normalize_utf8(texts, normalization_form)
    if lower_case:
        texts = tf_text.case_fold_utf8(texts)
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
    return texts


def split_words(texts):
    """Splits a `(B,)` string tensor on whitespace and punctuation: `(B, None)` ragged."""
    return tf_text.regex_split(texts, _DELIMITER, _PUNCTUATION)


@keras.saving.register_keras_serializable(package="keras_contrastive")
class TextPreprocessor(keras.layers.Layer):
    """Tokenizes raw strings in the graph into padded token ids and a padding mask.

    Each string is normalized (`normalize_text`), split into words on whitespace
    and punctuation, each word split into WordPiece sub-words (or looked up whole,
    for `tokenizer="whitespace"`), truncated, wrapped in `start_token` and
    `end_token`, and padded with `pad_token` (id 0) to `sequence_length`. Words
    (or, for WordPiece, words that cannot be spelled with the vocabulary's
    pieces) map to `unknown_token`. An empty string gives just the start and end
    tokens. Every step is a TensorFlow op, so the layer runs inside
    `tf.data.Dataset.map`, a Keras model and a SavedModel served on raw strings.
    XLA compiles no string op: to train with `jit_compile=True`, map the layer
    over the dataset and feed the token ids (`tests/models/test_xla.py`).

    Build one from a vocabulary, or learn the vocabulary from a corpus with
    `TextPreprocessor.from_corpus(texts, vocabulary_size=...)`. The vocabulary is
    part of `get_config`, so `.keras` files carry it.

    Args:
        vocabulary: list of str, the tokens; the index of a token is its id.
            `vocabulary[0]` must be `pad_token`, and every special token that is
            not `None` must appear. For WordPiece, continuation pieces start
            with `"##"`.
        sequence_length: int >= 2, the length of every output row. Defaults to
            `77` (CLIP's context length).
        tokenizer: `"wordpiece"` (Wu et al., 2016; as BERT) or `"whitespace"`
            (one token per word). Defaults to `"wordpiece"`.
        lower_case: bool, whether text is case-folded and stripped of accents
            (BERT uncased). Defaults to `True`.
        normalization_form: `"NFKC"`, `"NFC"`, `"NFD"`, `"NFKD"` or `None`, the
            Unicode normalization applied first. Defaults to `"NFKC"` (maps
            compatibility characters such as full-width letters and ligatures to
            their plain form).
        pad_token: str. Defaults to `"[PAD]"`.
        unknown_token: str. Defaults to `"[UNK]"`.
        start_token: str or `None` (no start token). Defaults to `"[START]"`.
        end_token: str or `None` (no end token). Defaults to `"[END]"`.
        mask_token: str or `None`, the token `TextAugmentation` masks with; it is
            never produced from text. Defaults to `"[MASK]"`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, ...).

    Shape:
        Input: a `tf.string` tensor of shape `()`, `(batch_size,)` or
        `(batch_size, 1)`. Output: a dict with `"token_ids"` (int32) and
        `"padding_mask"` (bool, `True` on real tokens), each of shape
        `(sequence_length,)` for a scalar input, else
        `(batch_size, sequence_length)`.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[START]", "[END]", "[MASK]", "a", "cat", "##s"]
    >>> tokenize = TextPreprocessor(vocab, sequence_length=6)
    >>> tokenize(tf.constant(["A cats!"]))["token_ids"]  # [[2, 5, 6, 7, 1, 3]]

    References:
        - Wu et al., 2016. "Google's Neural Machine Translation System: Bridging
          the Gap between Human and Machine Translation" (WordPiece).
          https://arxiv.org/abs/1609.08144
        - Devlin et al., 2019. "BERT: Pre-training of Deep Bidirectional
          Transformers for Language Understanding". https://arxiv.org/abs/1810.04805
        - Radford et al., 2021. "Learning Transferable Visual Models From Natural
          Language Supervision". https://arxiv.org/abs/2103.00020
    """

    def __init__(
        self,
        vocabulary,
        sequence_length=77,
        tokenizer="wordpiece",
        lower_case=True,
        normalization_form="NFKC",
        pad_token="[PAD]",
        unknown_token="[UNK]",
        start_token="[START]",
        end_token="[END]",
        mask_token="[MASK]",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("tokenizer", tokenizer, TOKENIZERS)
        if normalization_form is not None:
            check_choice("normalization_form", normalization_form, NORMALIZATION_FORMS)
        self.sequence_length = check_int("sequence_length", sequence_length, min=2)
        _check_special_tokens(
            pad_token=pad_token,
            unknown_token=unknown_token,
            start_token=start_token,
            end_token=end_token,
            mask_token=mask_token,
        )
        self.vocabulary = _check_vocabulary(
            vocabulary, pad_token, [unknown_token, start_token, end_token, mask_token]
        )
        self.tokenizer = tokenizer
        self.lower_case = check_bool("lower_case", lower_case)
        self.normalization_form = normalization_form
        self.pad_token = pad_token
        self.unknown_token = unknown_token
        self.start_token = start_token
        self.end_token = end_token
        self.mask_token = mask_token
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_token_id = 0
        self.unknown_token_id = ids[unknown_token]
        self.start_token_id = ids.get(start_token)
        self.end_token_id = ids.get(end_token)
        self.mask_token_id = ids.get(mask_token)
        self._lookup = self._make_lookup()
        self.built = True

    @classmethod
    def from_corpus(
        cls,
        texts,
        vocabulary_size=8000,
        sequence_length=77,
        tokenizer="wordpiece",
        **kwargs,
    ):
        """Learns a vocabulary from `texts` and returns a `TextPreprocessor`.

        Special tokens come first (`[PAD]`=0, `[UNK]`, `[START]`, `[END]`,
        `[MASK]`, or those given in `kwargs`). For `"wordpiece"` the rest is
        learned by tensorflow-text's WordPiece learner (the BERT vocabulary
        algorithm) from the word counts; it keeps every character seen, so any
        word of the corpus can be spelled. For `"whitespace"` the rest is the
        most frequent words (ties in alphabetical order).

        Args:
            texts: the corpus: a list or array of str, a string tensor, or a
                `tf.data.Dataset` of string tensors of any shape.
            vocabulary_size: int, the target number of tokens, special tokens
                included. The WordPiece learner may exceed it when the corpus
                has more distinct characters. Defaults to `8000`.
            sequence_length: see the class. Defaults to `77`.
            tokenizer: see the class. Defaults to `"wordpiece"`.
            **kwargs: the other constructor arguments (normalization, special
                tokens, `name`).

        Returns:
            A `TextPreprocessor`.
        """
        check_choice("tokenizer", tokenizer, TOKENIZERS)
        specials = _special_tokens(kwargs)
        check_int("vocabulary_size", vocabulary_size, min=len(specials) + 1)
        normalize_args = {
            key: kwargs[key] for key in ("lower_case", "normalization_form") if key in kwargs
        }
        counts = _count_words(texts, normalize_args)
        if tokenizer == "wordpiece":
            vocabulary = wordpiece_tokenizer_learner_lib.learn(
                counts, vocabulary_size, specials, lower_thresh=None
            )
        else:
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            words = [word for word, _ in ranked if word not in specials]
            vocabulary = specials + words[: vocabulary_size - len(specials)]
        return cls(vocabulary, sequence_length=sequence_length, tokenizer=tokenizer, **kwargs)

    @property
    def vocabulary_size(self):
        """The number of tokens in the vocabulary."""
        return len(self.vocabulary)

    def _make_lookup(self):
        """The words-to-ids function: a WordPiece model or a hash table."""
        if self.tokenizer == "wordpiece":
            return tf_text.FastWordpieceTokenizer(
                vocab=self.vocabulary,
                unknown_token=self.unknown_token,
                no_pretokenization=True,
                token_out_type=tf.int32,
            )
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary),
                tf.range(len(self.vocabulary), dtype=tf.int32),
            ),
            default_value=self.unknown_token_id,
        )

    def __call__(self, inputs, *args, **kwargs):
        # Python strings and lists become tensors here: Keras only accepts
        # tensors as positional arguments.
        if not isinstance(inputs, (tf.Tensor, keras.KerasTensor)):
            inputs = tf.convert_to_tensor(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        texts = _check_text_input(inputs)
        words = split_words(normalize_text(texts, self.lower_case, self.normalization_form))
        if self.tokenizer == "wordpiece":
            tokens = self._lookup.tokenize(words).merge_dims(-2, -1)
        else:
            tokens = tf.ragged.map_flat_values(self._lookup.lookup, words)
        token_ids, padding_mask = self._pack(tokens)
        if inputs.shape.rank == 0:
            token_ids, padding_mask = token_ids[0], padding_mask[0]
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def _pack(self, tokens):
        """Truncates, adds start/end tokens and pads a `(B, None)` ragged batch."""
        ends = [t for t in (self.start_token_id, self.end_token_id) if t is not None]
        tokens = tokens[:, : self.sequence_length - len(ends)]
        batch_size = tokens.nrows()
        if self.start_token_id is not None:
            tokens = tf.concat([tf.fill([batch_size, 1], self.start_token_id), tokens], 1)
        if self.end_token_id is not None:
            tokens = tf.concat([tokens, tf.fill([batch_size, 1], self.end_token_id)], 1)
        shape = [batch_size, self.sequence_length]
        token_ids = tokens.to_tensor(default_value=self.pad_token_id, shape=shape)
        padding_mask = tf.ones_like(tokens, tf.bool).to_tensor(False, shape=shape)
        return token_ids, padding_mask

    def compute_output_spec(self, inputs):
        if len(inputs.shape) == 0:
            shape = (self.sequence_length,)
        else:
            shape = (inputs.shape[0], self.sequence_length)
        return {
            "token_ids": keras.KerasTensor(shape, dtype="int32"),
            "padding_mask": keras.KerasTensor(shape, dtype="bool"),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary": list(self.vocabulary),
            "sequence_length": self.sequence_length,
            "tokenizer": self.tokenizer,
            "lower_case": self.lower_case,
            "normalization_form": self.normalization_form,
            "pad_token": self.pad_token,
            "unknown_token": self.unknown_token,
            "start_token": self.start_token,
            "end_token": self.end_token,
            "mask_token": self.mask_token,
        }


def _special_tokens(kwargs):
    """The special tokens, pad first, from constructor `kwargs` or the defaults."""
    defaults = {
        "pad_token": "[PAD]",
        "unknown_token": "[UNK]",
        "start_token": "[START]",
        "end_token": "[END]",
        "mask_token": "[MASK]",
    }
    tokens = [kwargs.get(key, default) for key, default in defaults.items()]
    return [token for token in tokens if token is not None]


def _check_special_tokens(**tokens):
    """`pad_token` and `unknown_token` are str; the other special tokens str or None."""
    for name, token in tokens.items():
        optional = name not in ("pad_token", "unknown_token")
        if not (isinstance(token, str) or (optional and token is None)):
            kind = "a str or None" if optional else "a str"
            raise TypeError(f"`{name}` must be {kind}. Received: {name}={token!r}")


def _check_vocabulary(vocabulary, pad_token, other_special_tokens):
    """Returns `vocabulary` as a list of str, checked for the special tokens."""
    if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, collections.abc.Iterable):
        raise TypeError(
            f"`vocabulary` must be a list of str tokens. Received: vocabulary={vocabulary!r}"
        )
    vocabulary = list(vocabulary)
    not_str = [token for token in vocabulary if not isinstance(token, str)]
    if not_str:
        raise TypeError(
            f"`vocabulary` must be a list of str tokens. Received non-str tokens: {not_str[:5]!r}"
        )
    if not vocabulary or vocabulary[0] != pad_token:
        raise ValueError(
            f"`vocabulary[0]` must be the pad token {pad_token!r} (id 0). "
            f"Received: vocabulary[:5]={vocabulary[:5]}"
        )
    duplicates = [t for t, n in collections.Counter(vocabulary).items() if n > 1]
    if duplicates:
        raise ValueError(
            f"`vocabulary` must not repeat tokens. Received repeated tokens: {duplicates[:10]}"
        )
    missing = [t for t in other_special_tokens if t is not None and t not in vocabulary]
    if missing:
        raise ValueError(
            f"`vocabulary` must contain the special tokens {missing}. "
            f"Received: vocabulary[:10]={vocabulary[:10]}"
        )
    return vocabulary


def _check_text_input(inputs):
    """Returns `inputs` as a `(B,)` string tensor, or raises naming `inputs`."""
    if inputs.dtype != tf.string:
        raise TypeError(
            "`inputs` must be a tf.string tensor of raw text. "
            f"Received: inputs.dtype={inputs.dtype.name}"
        )
    shape = inputs.shape
    if shape.rank == 0:
        return tf.reshape(inputs, [1])
    if shape.rank == 2 and shape[1] == 1:
        return tf.squeeze(inputs, axis=1)
    if shape.rank != 1:
        raise ValueError(
            "`inputs` must have shape (), (batch_size,) or (batch_size, 1). "
            f"Received: inputs.shape={shape}"
        )
    return inputs


def _count_words(texts, normalize_args):
    """A `Counter` of the normalized words of a corpus, or raises if it has none."""
    if not isinstance(texts, tf.data.Dataset):
        if isinstance(texts, (str, bytes)):
            raise TypeError(
                "`texts` must be a collection of strings, not a single string. "
                f"Received: texts={texts[:100]!r}"
            )
        if len(texts) == 0:
            raise ValueError("`texts` must not be empty. Received: texts=[]")
        texts = tf.data.Dataset.from_tensor_slices(tf.convert_to_tensor(texts))
        texts = texts.batch(1024)
    if texts.element_spec.dtype != tf.string:
        raise TypeError(
            "`texts` must contain tf.string values. "
            f"Received: element dtype {texts.element_spec.dtype.name}"
        )

    def words(batch):
        batch = normalize_text(tf.reshape(batch, [-1]), **normalize_args)
        return split_words(batch).flat_values

    counts = collections.Counter()
    for batch in texts.map(words).as_numpy_iterator():
        counts.update(batch.tolist())
    if not counts:
        raise ValueError(
            "`texts` must contain at least one word, but the corpus is empty (or only whitespace)."
        )
    return {word.decode("utf-8"): int(n) for word, n in counts.items()}
