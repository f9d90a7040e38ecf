"""CLIP-style zero-shot classification from class-name prompts."""

import numpy as np
import tensorflow as tf

from keras_contrastive.evaluation._data import (
    as_embeddings,
    embed,
    embed_labeled,
    input_batches,
    top_k_accuracy,
)
from keras_contrastive.evaluation._search import normalize
from keras_contrastive.ops._validation import check_positive


def _check_strings(name, values, what):
    values = [values] if isinstance(values, str) else list(values)
    if not values or not all(isinstance(value, str) for value in values):
        raise ValueError(
            f"`{name}` must be a non-empty list of {what}. Received: {name}={values!r}"
        )
    return values


class ZeroShotClassifier:
    """Classifies images by the most similar class prompt embedding.

    Each class name is put in every template (`"a photo of a {}."`), the
    prompts are embedded by `text_encoder`, L2-normalized, averaged over the
    templates and normalized again: one `(D,)` embedding per class
    (`class_embeddings`, `(C, D)`). An image's class scores are the cosine
    similarities between its embedding and the class embeddings.

    Inputs of `predict` and `evaluate` are image embeddings, or images when an
    `image_encoder` is given (run `batch_size` images at a time).

    Args:
        text_encoder: a callable mapping a `(n,)` `tf.string` tensor of
            prompts to `(n, D)` embeddings (a text tower, or an exported text
            encoder).
        class_names: the `C` class names, in label order.
        templates: prompt templates, each with one `{}` for the class name.
            Default `("a photo of a {}.",)` (Radford et al.).
        image_encoder: optional callable mapping an image batch to `(n, D)`
            embeddings. Default `None`: inputs are embeddings.
        batch_size: prompts and images encoded at once. Default 256.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> def text_encoder(prompts):  # "... cat." -> [1, 0], "... dog." -> [0, 1]
    ...     is_cat = tf.strings.regex_full_match(prompts, ".*cat.*")
    ...     return tf.one_hot(tf.cast(~is_cat, "int32"), 2)
    >>> classifier = ZeroShotClassifier(text_encoder, ["cat", "dog"])
    >>> classifier.predict(np.array([[0.1, 0.9]])).argmax(axis=1)
    array([1])

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021 (prompt ensembling, Sec. 3.1.4).
    """

    def __init__(
        self,
        text_encoder,
        class_names,
        templates=("a photo of a {}.",),
        image_encoder=None,
        batch_size=256,
    ):
        if not callable(text_encoder):
            raise TypeError(
                f"`text_encoder` must be callable. Received: text_encoder={text_encoder!r}"
            )
        if image_encoder is not None and not callable(image_encoder):
            raise TypeError(
                "`image_encoder` must be callable or None. "
                f"Received: image_encoder={image_encoder!r}"
            )
        self.class_names = _check_strings("class_names", class_names, "class names")
        self.templates = _check_strings("templates", templates, "template strings")
        for template in self.templates:
            if template.count("{}") != 1:
                raise ValueError(
                    "Each of `templates` must contain `{}` exactly once, where the "
                    f"class name goes. Received: {template!r}"
                )
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.batch_size = int(check_positive("batch_size", batch_size))
        self.class_embeddings = self._embed_classes()

    def _embed_classes(self):
        prompts = np.array([t.format(name) for name in self.class_names for t in self.templates])
        batches = (
            tf.constant(prompts[i : i + self.batch_size])
            for i in range(0, len(prompts), self.batch_size)
        )
        prompt_embeddings = normalize(embed(self.text_encoder, batches, "templates"))
        if len(prompt_embeddings) != len(prompts):
            raise ValueError(
                "`text_encoder` must return one embedding per prompt. Received: "
                f"{len(prompt_embeddings)} embeddings for {len(prompts)} prompts"
            )
        per_class = prompt_embeddings.reshape(len(self.class_names), len(self.templates), -1)
        return normalize(per_class.mean(axis=1))

    def _scores(self, embeddings, name):
        if embeddings.shape[1] != self.class_embeddings.shape[1]:
            raise ValueError(
                f"The image embeddings of `{name}` must have the text embedding "
                f"dimension {self.class_embeddings.shape[1]}. "
                f"Received: shape={embeddings.shape}"
            )
        return normalize(embeddings) @ self.class_embeddings.T

    def predict(self, inputs):
        """`(N, C)` cosine similarities of images (or embeddings) to the classes."""
        if self.image_encoder is None:
            embeddings = as_embeddings("inputs", inputs)
        else:
            embeddings = embed(self.image_encoder, input_batches(inputs, self.batch_size), "inputs")
        return self._scores(embeddings, "inputs")

    def evaluate(self, data):
        """`{"top1", "top5"}` accuracy on `(x, y)` arrays or a dataset of them.

        `x` are images when `image_encoder` is set, else embeddings; `y` are
        integer indices into `class_names`.
        """
        embeddings, labels = embed_labeled(self.image_encoder, data, "data", self.batch_size)
        if labels.max() >= len(self.class_names):
            raise ValueError(
                f"The labels of `data` must index the {len(self.class_names)} "
                f"`class_names`. Received: max label={labels.max()}"
            )
        return top_k_accuracy(self._scores(embeddings, "data"), labels)
