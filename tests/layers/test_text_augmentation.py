import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.layers import TextAugmentation, TextPreprocessor

START, END, MASK = 2, 3, 4
LENGTH = 12


def make_tokens(num_rows=64, num_content=8):
    """Identical rows: [START] 10 11 ... [END] [PAD]..."""
    row = [START, *range(10, 10 + num_content), END]
    row += [0] * (LENGTH - len(row))
    token_ids = np.array([row] * num_rows, "int32")
    return {"token_ids": token_ids, "padding_mask": token_ids != 0}


def content_of(row_ids, row_mask):
    return [t for t, m in zip(row_ids, row_mask, strict=True) if m and t not in (START, END)]


def check_structure(out, num_rows):
    ids = out["token_ids"].numpy()
    mask = out["padding_mask"].numpy()
    assert ids.shape == (num_rows, LENGTH) and ids.dtype == np.int32
    assert mask.dtype == bool
    for row_ids, row_mask in zip(ids, mask, strict=True):
        n = row_mask.sum()
        assert row_mask[:n].all() and not row_mask[n:].any()  # packed left
        assert row_ids[0] == START and row_ids[n - 1] == END
        assert (row_ids[n:] == 0).all()
    return ids, mask


def test_identity_at_inference():
    tokens = make_tokens()
    out = TextAugmentation(seed=1)(tokens, training=False)
    for key in tokens:
        np.testing.assert_array_equal(out[key], tokens[key])


def test_defaults_match_text_preprocessor_ids():
    vocab = ["[PAD]", "[UNK]", "[START]", "[END]", "[MASK]", "cat"]
    pre = TextPreprocessor(vocab)
    aug = TextAugmentation()
    assert aug.mask_token_id == pre.mask_token_id
    assert set(aug.special_token_ids) == {pre.start_token_id, pre.end_token_id}
    assert aug.pad_token_id == pre.pad_token_id


def test_span_crop_keeps_a_contiguous_span():
    tokens = make_tokens(num_content=8)
    aug = TextAugmentation(dropout_rate=0.0, mask_rate=0.0, min_span_fraction=0.5, seed=2)
    ids, mask = check_structure(aug(tokens), 64)
    original = list(range(10, 18))
    lengths = set()
    for row_ids, row_mask in zip(ids, mask, strict=True):
        span = content_of(row_ids, row_mask)
        assert len(span) >= math.ceil(0.5 * 8)
        start = original.index(span[0])
        assert span == original[start : start + len(span)]
        lengths.add(len(span))
    assert len(lengths) > 1  # the span length varies per example


def test_dropout_keeps_an_ordered_subsequence_at_the_rate():
    tokens = make_tokens(num_rows=256, num_content=8)
    aug = TextAugmentation(dropout_rate=0.3, mask_rate=0.0, min_span_fraction=1.0, seed=3)
    ids, mask = check_structure(aug(tokens), 256)
    kept = 0
    for row_ids, row_mask in zip(ids, mask, strict=True):
        content = content_of(row_ids, row_mask)
        assert content == sorted(content) and len(set(content)) == len(content)
        kept += len(content)
    assert abs(kept / (256 * 8) - 0.7) < 0.05


def test_masking_replaces_content_only_at_the_rate():
    tokens = make_tokens(num_rows=256, num_content=8)
    aug = TextAugmentation(dropout_rate=0.0, mask_rate=0.25, min_span_fraction=1.0, seed=4)
    ids, mask = check_structure(aug(tokens), 256)
    content = ids[:, 1:9]
    original = tokens["token_ids"][:, 1:9]
    assert ((content == MASK) | (content == original)).all()
    assert abs((content == MASK).mean() - 0.25) < 0.04
    np.testing.assert_array_equal(mask, tokens["padding_mask"])


def test_extreme_rates_never_touch_special_tokens():
    tokens = make_tokens(num_rows=4)
    dropped = TextAugmentation(dropout_rate=1.0, seed=5)(tokens)
    np.testing.assert_array_equal(dropped["token_ids"][:, :3], [[START, END, 0]] * 4)
    masked = TextAugmentation(dropout_rate=0.0, mask_rate=1.0, min_span_fraction=1.0)(tokens)
    expected = np.where(tokens["token_ids"] >= 10, MASK, tokens["token_ids"])
    np.testing.assert_array_equal(masked["token_ids"], expected)


def test_per_example_independence_and_seeding():
    tokens = make_tokens(num_rows=16)
    aug = TextAugmentation(seed=7)
    first = aug(tokens)["token_ids"].numpy()
    second = aug(tokens)["token_ids"].numpy()
    assert len({tuple(row) for row in first}) > 8  # rows differ from each other
    assert not np.array_equal(first, second)  # calls differ
    replay = TextAugmentation(seed=7)
    np.testing.assert_array_equal(replay(tokens)["token_ids"], first)
    np.testing.assert_array_equal(replay(tokens)["token_ids"], second)


def test_explicit_seed_overrides_the_generator():
    tokens = make_tokens(num_rows=16)
    aug = TextAugmentation(seed=1)
    state = aug.seed_generator.state.numpy().copy()
    a = aug(tokens, seed=tf.constant([3, 4]))["token_ids"]
    b = TextAugmentation(seed=99)(tokens, seed=tf.constant([3, 4]))["token_ids"]
    c = aug(tokens, seed=tf.constant([3, 5]))["token_ids"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(aug.seed_generator.state, state)  # not advanced


def test_in_tf_data_map_and_tf_function():
    tokens = make_tokens(num_rows=8)
    aug = TextAugmentation(seed=3)
    ds = tf.data.Dataset.from_tensor_slices(tokens).batch(4).map(aug)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 2
    for batch in batches:
        check_structure({k: tf.constant(v) for k, v in batch.items()}, 4)
    out = tf.function(lambda x: aug(x, training=True))(tokens)
    check_structure(out, 8)


def test_unbatched_examples_in_tf_data():
    tokens = make_tokens(num_rows=8)
    aug = TextAugmentation(dropout_rate=0.0, mask_rate=1.0, min_span_fraction=1.0, seed=3)
    ds = tf.data.Dataset.from_tensor_slices(tokens).map(aug).batch(8)
    out = next(iter(ds))
    expected = np.where(tokens["token_ids"] >= 10, MASK, tokens["token_ids"])
    np.testing.assert_array_equal(out["token_ids"], expected)
    one = {key: value[0] for key, value in tokens.items()}
    view = TextAugmentation(dropout_rate=1.0, seed=4)(one)
    assert view["token_ids"].shape == (LENGTH,)
    np.testing.assert_array_equal(view["token_ids"][:3], [START, END, 0])


def test_config_and_keras_round_trip(tmp_path):
    aug = TextAugmentation(
        dropout_rate=0.2,
        mask_rate=0.1,
        min_span_fraction=0.6,
        mask_token_id=9,
        special_token_ids=(1, 2),
        seed=11,
        name="aug",
    )
    config = aug.get_config()
    assert TextAugmentation.from_config(config).get_config() == config
    inputs = {
        "token_ids": keras.Input((LENGTH,), dtype="int32", name="token_ids"),
        "padding_mask": keras.Input((LENGTH,), dtype="bool", name="padding_mask"),
    }
    model = keras.Model(inputs, aug(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path).get_layer("aug")
    assert loaded.get_config() == config
    tokens = make_tokens(num_rows=8)
    # The seed generator's state is saved: both continue the same sequence.
    np.testing.assert_array_equal(loaded(tokens)["token_ids"], aug(tokens)["token_ids"])


@pytest.mark.parametrize(
    "name, value",
    [("dropout_rate", -0.1), ("mask_rate", 1.5), ("min_span_fraction", 2.0)],
)
def test_bad_probabilities(name, value):
    with pytest.raises(ValueError, match=f"`{name}` must be a finite number in \\[0, 1\\]"):
        TextAugmentation(**{name: value})


def test_bad_inputs():
    aug = TextAugmentation()
    tokens = make_tokens(num_rows=2)
    with pytest.raises(ValueError, match="`inputs` must be a dict"):
        aug(tokens["token_ids"])
    with pytest.raises(ValueError, match="must both have shape"):
        aug({"token_ids": tokens["token_ids"], "padding_mask": tokens["padding_mask"][0]})
    with pytest.raises(ValueError, match="must both have shape"):
        aug({"token_ids": tokens["token_ids"][None], "padding_mask": tokens["padding_mask"][None]})
    with pytest.raises(TypeError, match="must be integer"):
        aug({"token_ids": tokens["token_ids"] * 1.0, "padding_mask": tokens["padding_mask"]})


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"mask_token_id": "[MASK]"}, TypeError, "mask_token_id"),
        ({"special_token_ids": (2, -1)}, ValueError, "special_token_ids"),
        ({"pad_token_id": 0.0}, TypeError, "pad_token_id"),
    ],
)
def test_bad_token_ids(kwargs, error, name):
    with pytest.raises(error, match=f"`{name}` must be an int >= 0"):
        TextAugmentation(**kwargs)
