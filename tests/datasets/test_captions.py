"""Tests for the generated digit captions and the image-text dataset."""

import re

import numpy as np
import pytest

from keras_contrastive.datasets import (
    DIGIT_NAMES,
    TRAIN_TEMPLATES,
    ZERO_SHOT_TEMPLATES,
    digit_captions,
    image_text_dataset,
)


def _label_of(caption):
    """The class a caption names, read back from its word or numeral."""
    found = {i for i, name in enumerate(DIGIT_NAMES) if re.search(rf"\b({name}|{i})\b", caption)}
    assert len(found) == 1, caption
    return found.pop()


def test_captions_name_the_label_with_distinct_templates():
    labels = np.arange(100) % 10
    captions = digit_captions(labels, captions_per_image=5)
    assert captions.shape == (100, 5) and captions.dtype.kind == "U"
    for label, row in zip(labels, captions, strict=True):
        assert [_label_of(c) for c in row] == [label] * 5
        assert len(set(row)) == 5
        # Every caption is one of the training templates filled in.
        patterns = [re.escape(t).replace(r"\{\}", r"(\w+)") for t in TRAIN_TEMPLATES]
        used = [next(i for i, p in enumerate(patterns) if re.fullmatch(p, c)) for c in row]
        assert len(set(used)) == 5


def test_captions_vary_and_use_both_words_and_numerals():
    captions = digit_captions(np.full(50, 7), captions_per_image=3)
    flat = set(captions.ravel())
    assert len(flat) > 15
    assert any("seven" in c for c in flat) and any("7" in c for c in flat)


def test_captions_are_seeded():
    labels = np.arange(20) % 10
    np.testing.assert_array_equal(digit_captions(labels, seed=1), digit_captions(labels, seed=1))
    assert not np.array_equal(digit_captions(labels, seed=1), digit_captions(labels, seed=2))


def test_zero_shot_templates_are_held_out():
    assert not set(TRAIN_TEMPLATES) & set(ZERO_SHOT_TEMPLATES)
    assert all(t.count("{}") == 1 for t in TRAIN_TEMPLATES + ZERO_SHOT_TEMPLATES)
    prompts = digit_captions(np.arange(10), captions_per_image=1, templates=ZERO_SHOT_TEMPLATES)
    assert [_label_of(p) for p in prompts[:, 0]] == list(range(10))


def test_custom_class_names():
    captions = digit_captions([1, 0], 2, templates=("a {}", "the {}"), class_names=("cat", "dog"))
    assert {c.split()[1] for c in captions[0]} == {"dog"}
    assert sorted(captions[1]) == ["a cat", "the cat"]


def test_image_text_dataset_draws_one_caption_per_image_each_epoch():
    images = np.arange(6, dtype="float32").reshape(6, 1, 1, 1)
    captions = np.array([[f"image {i} caption {k}" for k in range(4)] for i in range(6)])
    dataset = image_text_dataset(images, captions, batch_size=4, shuffle=True, seed=0)
    epochs = []
    for _ in range(40):
        batches = list(dataset.as_numpy_iterator())
        assert [b["image"].shape for b in batches] == [(4, 1, 1, 1), (2, 1, 1, 1)]
        pairs = [
            (int(i), t.decode())
            for b in batches
            for i, t in zip(b["image"][:, 0, 0, 0], b["text"], strict=True)
        ]
        assert sorted(i for i, _ in pairs) == list(range(6))
        assert all(text.startswith(f"image {i} ") for i, text in pairs)
        epochs.append(dict(pairs))
    # Captions are drawn anew each epoch, and over epochs every caption comes up.
    assert len({tuple(sorted(e.items())) for e in epochs}) > 1
    assert {text for e in epochs for text in e.values()} == set(captions.ravel())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"labels": [10]}, "labels"),
        ({"labels": [1.5]}, "labels"),
        ({"labels": [[1]]}, "labels"),
        ({"captions_per_image": 0}, "captions_per_image"),
        ({"captions_per_image": len(TRAIN_TEMPLATES) + 1}, "captions_per_image"),
        ({"templates": ("no slot",)}, "templates"),
        ({"templates": "a {}"}, "templates"),
        ({"templates": ()}, "templates"),
    ],
)
def test_digit_captions_bad_arguments(kwargs, name):
    kwargs = {"labels": [1, 2], **kwargs}
    with pytest.raises(ValueError, match=f"`{name}`"):
        digit_captions(**kwargs)


def test_image_text_dataset_bad_captions():
    with pytest.raises(ValueError, match="`captions`"):
        image_text_dataset(np.zeros((3, 2, 2, 1)), np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="`captions`"):
        image_text_dataset(np.zeros((3, 2, 2, 1)), np.array([["a"], ["b"]]))
