import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import TextPreprocessor

SPECIALS = ["[PAD]", "[UNK]", "[START]", "[END]", "[MASK]"]
# ids:        5     6      7      8      9     10     11    12   13    14     15
WORDS = ["the", "cat", "##s", "sat", "on", "mat", "!", ",", "cafe", "dog", "##gy"]
VOCAB = SPECIALS + WORDS
CORPUS = [
    "The cat sat on the mat.",
    "A dog sat on the log!",
    "The cats and the dogs.",
    "Café au lait, s'il vous plaît.",
]


def ids(*tokens):
    return [VOCAB.index(t) for t in tokens]


@pytest.fixture(scope="module")
def tokenizer():
    return TextPreprocessor(VOCAB, sequence_length=8)


@pytest.fixture(scope="module")
def learned():
    return TextPreprocessor.from_corpus(CORPUS, vocabulary_size=80, sequence_length=12)


def test_hand_computed_wordpiece(tokenizer):
    out = tokenizer(tf.constant(["The CATS sat, on the mat!", "Café doggy", "", "a cat"]))
    start, end, unk = 2, 3, 1
    expected = np.array(
        [
            # truncated to 6 tokens between start and end
            [start, *ids("the", "cat", "##s", "sat", ",", "on"), end],
            # NFKC + case fold + accent stripping: "café" -> "cafe"
            [start, *ids("cafe", "dog", "##gy"), end, 0, 0, 0],
            [start, end, 0, 0, 0, 0, 0, 0],
            # "a" cannot be spelled with the vocabulary
            [start, unk, *ids("cat"), end, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(out["token_ids"], expected)
    np.testing.assert_array_equal(out["padding_mask"], expected != 0)
    assert out["token_ids"].dtype == tf.int32
    assert out["padding_mask"].dtype == tf.bool


def test_hand_computed_whitespace():
    layer = TextPreprocessor(VOCAB, sequence_length=6, tokenizer="whitespace")
    out = layer(tf.constant(["the cats sat!", "dog"]))
    expected = [[2, *ids("the"), 1, *ids("sat", "!"), 3], [2, *ids("dog"), 3, 0, 0, 0]]
    np.testing.assert_array_equal(out["token_ids"], expected)


def test_cased_without_normalization_and_without_start_end():
    layer = TextPreprocessor(
        VOCAB,
        sequence_length=4,
        lower_case=False,
        normalization_form=None,
        start_token=None,
        end_token=None,
    )
    out = layer(tf.constant(["The cat sat on", "ﬁ cat"]))  # "ﬁ" ligature kept
    np.testing.assert_array_equal(
        out["token_ids"], [[1, *ids("cat", "sat", "on")], [1, *ids("cat"), 0, 0]]
    )


def test_input_shapes(tokenizer):
    batch = tokenizer(tf.constant(["the cat", "mat"]))["token_ids"]
    column = tokenizer(tf.constant([["the cat"], ["mat"]]))["token_ids"]
    scalar = tokenizer(tf.constant("the cat"))
    np.testing.assert_array_equal(column, batch)
    assert scalar["token_ids"].shape == (8,) and scalar["padding_mask"].shape == (8,)
    np.testing.assert_array_equal(scalar["token_ids"], batch[0])
    np.testing.assert_array_equal(tokenizer(["the cat", "mat"])["token_ids"], batch)


def test_symbolic_call_in_functional_model(tokenizer):
    inputs = keras.Input(shape=(), dtype="string")
    outputs = tokenizer(inputs)
    assert outputs["token_ids"].shape == (None, 8)
    assert outputs["padding_mask"].dtype == "bool"


def test_in_tf_data_map(tokenizer):
    texts = ["the cat", "", "on the mat"]
    expected = tokenizer(tf.constant(texts))["token_ids"].numpy()
    batched = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    got = np.concatenate([b["token_ids"] for b in batched.as_numpy_iterator()])
    np.testing.assert_array_equal(got, expected)
    unbatched = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer).batch(3)
    np.testing.assert_array_equal(next(iter(unbatched))["token_ids"], expected)


def test_from_corpus_vocabulary(learned):
    vocab = learned.vocabulary
    assert vocab[:5] == SPECIALS and len(set(vocab)) == len(vocab)
    assert learned.mask_token_id == 4 and learned.start_token_id == 2
    assert {"the", "sat", "on"} <= set(vocab)  # the most frequent words
    # Every corpus word can be spelled: no unknown token.
    out = learned(tf.constant(CORPUS))
    assert not np.any(out["token_ids"].numpy() == learned.unknown_token_id)


def test_from_corpus_dataset_equals_list(learned):
    ds = tf.data.Dataset.from_tensor_slices(CORPUS).batch(3)
    from_ds = TextPreprocessor.from_corpus(ds, vocabulary_size=80, sequence_length=12)
    assert from_ds.vocabulary == learned.vocabulary


def test_from_corpus_whitespace_most_frequent_words():
    layer = TextPreprocessor.from_corpus(
        CORPUS, vocabulary_size=8, tokenizer="whitespace", sequence_length=6
    )
    # "the" 5 times, "." 2, "on" 2, "sat" 2 -> the two ties broken alphabetically.
    assert layer.vocabulary == SPECIALS + ["the", ".", "on"]
    np.testing.assert_array_equal(
        layer(tf.constant(["the cat on"]))["token_ids"], [[2, 5, 1, 7, 3, 0]]
    )


def test_config_and_keras_round_trip_tokenize_identically(tmp_path, learned):
    config = learned.get_config()
    assert TextPreprocessor.from_config(config).get_config() == config
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, learned(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    texts = tf.constant(CORPUS + ["unseen words ÉTÉ", ""])
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(loaded(texts)[key], model(texts)[key])
    assert loaded.layers[-1].vocabulary == learned.vocabulary


class _Serving(tf.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, texts):
        return self.layer(texts)


@pytest.mark.parametrize("tokenizer_kind", ["wordpiece", "whitespace"])
def test_saved_model_on_raw_strings(tmp_path, tokenizer_kind):
    layer = TextPreprocessor(VOCAB, sequence_length=8, tokenizer=tokenizer_kind)
    path = str(tmp_path / "saved")
    tf.saved_model.save(_Serving(layer), path)
    restored = tf.saved_model.load(path)
    texts = tf.constant(["The cats sat on the mat!", "", "doggy café"])
    expected = layer(texts)
    got = restored.serve(texts)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"sequence_length": 1}, ValueError, "sequence_length"),
        ({"sequence_length": 4.0}, TypeError, "sequence_length"),
        ({"tokenizer": "bpe"}, ValueError, "tokenizer"),
        ({"normalization_form": "NFX"}, ValueError, "normalization_form"),
        ({"vocabulary": "the cat"}, TypeError, "vocabulary"),
        ({"vocabulary": ["the", "[PAD]", "[UNK]"]}, ValueError, "vocabulary"),
        ({"vocabulary": ["[PAD]", "[UNK]", "the", "the"]}, ValueError, "vocabulary"),
        ({"vocabulary": ["[PAD]", "[UNK]", "[END]", "[MASK]"]}, ValueError, "vocabulary"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    kwargs = {"vocabulary": VOCAB, **kwargs}
    with pytest.raises(error, match=f"`{name}"):
        TextPreprocessor(**kwargs)


def test_bad_inputs(tokenizer):
    with pytest.raises(TypeError, match="`inputs` must be a tf.string"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(TypeError, match="`inputs` must be a tf.string"):
        tokenizer(np.ones((2,), "float32"))
    with pytest.raises(ValueError, match="`inputs` must have shape"):
        tokenizer(tf.constant([["a", "b"]]))


@pytest.mark.parametrize(
    "texts, error",
    [
        ([], ValueError),
        (tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string)), ValueError),
        (["", "  "], ValueError),
        ("the cat", TypeError),
        ([1, 2], TypeError),
    ],
)
def test_bad_corpus(texts, error):
    with pytest.raises(error, match="`texts`"):
        TextPreprocessor.from_corpus(texts, vocabulary_size=40)


def test_bad_vocabulary_size():
    with pytest.raises(ValueError, match="`vocabulary_size`"):
        TextPreprocessor.from_corpus(CORPUS, vocabulary_size=5)
