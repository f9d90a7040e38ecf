"""Zero-shot classification on a task where text and image embeddings match."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrastive.evaluation import ZeroShotClassifier

CLASSES = [f"class{i}" for i in range(8)]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "{}"]


@pytest.fixture(scope="module")
def task():
    """Prompt embeddings = class direction + template-specific offset."""
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(8, 16))
    offsets = 0.5 * rng.normal(size=(3, 16))
    table = {
        template.format(name): directions[c] * rng.uniform(1, 3) + offsets[t]
        for c, name in enumerate(CLASSES)
        for t, template in enumerate(TEMPLATES)
    }

    def text_encoder(prompts):
        return np.stack([table[p.decode()] for p in prompts.numpy()]).astype("float32")

    labels = rng.integers(0, 8, size=64)
    images = (directions[labels] + 0.3 * rng.normal(size=(64, 16))).astype("float32")
    return text_encoder, table, images, labels


def test_class_embeddings_are_normalized_template_means(task):
    text_encoder, table, _, _ = task
    classifier = ZeroShotClassifier(text_encoder, CLASSES, TEMPLATES, batch_size=5)
    for c, name in enumerate(CLASSES):
        prompts = np.stack([table[t.format(name)] for t in TEMPLATES])
        mean = (prompts / np.linalg.norm(prompts, axis=1, keepdims=True)).mean(axis=0)
        np.testing.assert_allclose(
            classifier.class_embeddings[c], mean / np.linalg.norm(mean), atol=1e-5
        )


def test_predict_and_evaluate_match_numpy(task):
    text_encoder, _, images, labels = task
    classifier = ZeroShotClassifier(text_encoder, CLASSES, TEMPLATES)
    scores = classifier.predict(images)
    normalized = images / np.linalg.norm(images, axis=1, keepdims=True)
    np.testing.assert_allclose(scores, normalized @ classifier.class_embeddings.T, atol=1e-5)
    ranking = np.argsort(-scores, axis=1)
    want = {
        "top1": np.mean(ranking[:, 0] == labels),
        "top5": np.mean((ranking[:, :5] == labels[:, None]).any(axis=1)),
    }
    assert classifier.evaluate((images, labels)) == pytest.approx(want)
    assert want["top1"] == 1.0


def test_image_encoder_and_dataset(task):
    text_encoder, _, images, labels = task
    # The "images" are embeddings doubled; the encoder halves them.
    image_encoder = keras.Sequential([keras.Input((16,)), keras.layers.Rescaling(0.5)])
    classifier = ZeroShotClassifier(text_encoder, CLASSES, TEMPLATES, image_encoder=image_encoder)
    np.testing.assert_allclose(
        classifier.predict(2 * images),
        ZeroShotClassifier(text_encoder, CLASSES, TEMPLATES).predict(images),
        atol=1e-5,
    )
    data = tf.data.Dataset.from_tensor_slices((2 * images, labels)).batch(10)
    assert classifier.evaluate(data) == {"top1": 1.0, "top5": 1.0}


def test_works_with_a_tensorflow_text_encoder():
    def text_encoder(prompts):  # "... cat ..." -> [1, 0], anything else -> [0, 1]
        is_cat = tf.strings.regex_full_match(prompts, ".*cat.*")
        return tf.one_hot(tf.cast(tf.logical_not(is_cat), "int32"), 2)

    classifier = ZeroShotClassifier(text_encoder, ["cat", "dog"])
    assert classifier.predict(np.array([[0.1, 0.9], [2.0, 0.0]])).argmax(axis=1).tolist() == [1, 0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"class_names": []}, "class_names"),
        ({"templates": ["a photo of a cat"]}, "templates"),
        ({"templates": ["{} and {}"]}, "templates"),
        ({"templates": []}, "templates"),
        ({"text_encoder": "not callable"}, "text_encoder"),
        ({"image_encoder": 3}, "image_encoder"),
    ],
)
def test_bad_arguments(task, kwargs, match):
    args = {"text_encoder": task[0], "class_names": CLASSES, "templates": TEMPLATES}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=f"`{match}`"):
        ZeroShotClassifier(**args)


def test_bad_inputs(task):
    text_encoder, _, images, labels = task
    classifier = ZeroShotClassifier(text_encoder, CLASSES, TEMPLATES)
    with pytest.raises(ValueError, match="`inputs`"):
        classifier.predict(images[:, :8])
    with pytest.raises(ValueError, match="`inputs`"):
        classifier.predict(np.full((2, 16), np.nan))
    with pytest.raises(ValueError, match="`data`"):
        classifier.evaluate((images, labels[:10]))
    with pytest.raises(ValueError, match="`class_names`"):
        classifier.evaluate((images, labels + 8))
