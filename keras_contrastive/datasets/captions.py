"""Generated captions of digit images, for the dual-encoder (CLIP-style) demo."""

import numpy as np
import tensorflow as tf

from keras_contrastive.datasets.digits import DIGIT_NAMES
from keras_contrastive.datasets.tf_data import batch_and_prefetch

# Each template has one "{}" for a label word: the class name or the numeral.
TRAIN_TEMPLATES = (
    "a handwritten {}",
    "the digit {} written by hand",
    "a scan of the number {}",
    "the digit {} drawn with a pen",
    "an image of a handwritten digit {}",
    "the number {}",
    "a small blurry {}",
    "a hand-drawn {} on white paper",
    "a photo of the digit {}",
    "someone wrote the number {}",
    "a scanned handwritten {} digit",
    "a low resolution picture of a handwritten {}",
)
# Held out from training: phrasings never seen with any class, for zero-shot evaluation.
ZERO_SHOT_TEMPLATES = (
    "a picture of the handwritten number {}",
    "the number {} written by someone",
    "a drawing of the digit {}",
    "an image showing a handwritten {}",
    "this is a handwritten {}",
)


def _label_words(class_names):
    """Per class, the words a caption may use: the name, and the numeral of a digit name."""
    digit_words = {name: str(i) for i, name in enumerate(DIGIT_NAMES)}
    return [(name, digit_words[name]) if name in digit_words else (name,) for name in class_names]


def _check_templates(templates):
    if isinstance(templates, str) or not templates:
        raise ValueError(
            f"`templates` must be a non-empty list of str. Received: templates={templates!r}"
        )
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                "Each of `templates` must be a str with exactly one `{}` for the label word. "
                f"Received: {template!r}"
            )


def digit_captions(
    labels, captions_per_image=5, templates=TRAIN_TEMPLATES, class_names=DIGIT_NAMES, seed=0
):
    """Writes several different captions per image from templates and label words.

    For each image, `captions_per_image` distinct templates are drawn at random
    and each is filled with one of the class's label words, drawn at random:
    the class name (`"seven"`) or, for a digit name, its numeral (`"7"`), e.g. `"a handwritten
    seven"`, `"the digit 7 written by hand"`. `ZERO_SHOT_TEMPLATES` share no
    template with `TRAIN_TEMPLATES`: prompts built from them with the class
    names test zero-shot transfer to unseen phrasings.

    Args:
        labels: int array `(N,)` of class ids in `[0, len(class_names))`.
        captions_per_image: int in `[1, len(templates)]`. Defaults to `5`
            (as COCO Captions).
        templates: the templates, each a str with one `{}`. Defaults to
            `TRAIN_TEMPLATES`.
        class_names: the class names, in label order. Defaults to
            `DIGIT_NAMES` (`"zero"` ... `"nine"`).
        seed: int, the seed of the draws. Defaults to `0`.

    Returns:
        A str NumPy array of shape `(N, captions_per_image)`.

    Example:

    >>> digit_captions([7], captions_per_image=2)  # e.g. [["a handwritten 7", "the number seven"]]

    References:
        - Radford et al., 2021. "Learning Transferable Visual Models From
          Natural Language Supervision" (prompt templates, Sec. 3.1.4).
          https://arxiv.org/abs/2103.00020
    """
    _check_templates(templates)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            "`labels` must be a 1-D array of int class ids. "
            f"Received: labels.shape={labels.shape}, labels.dtype={labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(
            f"`labels` must be in [0, {len(class_names)}) (one per class name). "
            f"Received: min={labels.min()}, max={labels.max()}"
        )
    count = len(templates)
    if isinstance(captions_per_image, bool) or captions_per_image not in range(1, count + 1):
        raise ValueError(
            f"`captions_per_image` must be an int in [1, {count}] (the number of templates). "
            f"Received: captions_per_image={captions_per_image!r}"
        )
    words = _label_words(class_names)
    rng = np.random.default_rng(seed)
    captions = np.empty((len(labels), captions_per_image), dtype=object)
    for i, label in enumerate(labels):
        chosen = rng.choice(count, size=captions_per_image, replace=False)
        for j, t in enumerate(chosen):
            captions[i, j] = templates[t].format(rng.choice(words[label]))
    return captions.astype(str)


def image_text_dataset(images, captions, batch_size=128, shuffle=True, seed=0):
    """Pairs each image with one of its captions, drawn anew each epoch, as `tf.data`.

    Every image appears once per epoch, with one of its `K` captions drawn at
    random (`tf.data.Dataset.random`, re-drawn each epoch), so a batch holds
    one caption per image and the in-batch negatives of `CLIPLoss` are the
    other images' captions; over epochs every caption is used.

    Args:
        images: array `(N, H, W, C)`.
        captions: str array `(N, K)`, e.g. from `digit_captions`.
        batch_size: int > 0. Defaults to `128`.
        shuffle: bool, whether to shuffle the images each epoch. Defaults to
            `True`.
        seed: int, the seed of the shuffle and of the caption draws. Defaults
            to `0`.

    Returns:
        A `tf.data.Dataset` of `{"image": (B, H, W, C), "text": (B,) tf.string}`.

    Example:

    >>> import keras_contrastive as kc
    >>> x, y = kc.datasets.digits().train
    >>> pairs = kc.datasets.image_text_dataset(x, kc.datasets.digit_captions(y), batch_size=64)
    """
    captions = np.asarray(captions)
    if captions.ndim != 2 or captions.shape[1] == 0 or captions.shape[0] != len(images):
        raise ValueError(
            "`captions` must have shape (N, K), K >= 1 captions for each of the N images. "
            f"Received: captions.shape={captions.shape}, len(images)={len(images)}"
        )
    count = captions.shape[1]
    pairs = tf.data.Dataset.from_tensor_slices((images, captions))
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def pick(pair, draw):
        image, texts = pair
        return {"image": image, "text": texts[draw % count]}

    dataset = tf.data.Dataset.zip(pairs, draws).map(pick, num_parallel_calls=tf.data.AUTOTUNE)
    return batch_and_prefetch(dataset, len(images), batch_size, shuffle, seed, False)
