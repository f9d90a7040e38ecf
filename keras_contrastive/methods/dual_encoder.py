"""CLIP's method: image and text towers, each pair the other's positive."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.layers import SigmoidLogitScale
from keras_contrastive.losses import CLIPLoss, contract_of
from keras_contrastive.methods._data import (
    check_sample_weight,
    flat_ids,
    structure_error,
    unpack,
)
from keras_contrastive.methods.method import (
    Method,
    Prepared,
    Step,
    check_takes_hard_negatives,
    per_example,
    with_state,
)
from keras_contrastive.metrics import ContrastiveAccuracy
from keras_contrastive.ops._validation import check_same_batch


@keras.saving.register_keras_serializable(package="keras_contrastive")
class DualEncoder(Method):
    """Image–text training of two towers (CLIP, Radford et al. 2021; SigLIP).

    Images go through the model's `image_encoder` and `image_head`, texts
    through its `text_preprocessor`, `text_encoder` and `text_head`; the loss
    (default `kc.losses.CLIPLoss()`) receives the `(B, 2, D)` (image, text)
    pairs. Losses of contract `y_pred="pair"` train here, with
    `labels="integer"` group ids (several captions of one image) or without.
    A model `logit_scale` is the loss's state: `y_pred` is then
    `{"embeddings": pairs, "temperature": t}` (and `"bias"` for a
    `kc.layers.SigmoidLogitScale`), which the loss must declare
    (`CLIPLoss`, `SigLIPLoss`).

    Batch layout: `{"image": images, "text": texts}`, texts as `tf.string`
    (tokenized by the model's `text_preprocessor`) or the text encoder's
    token inputs; optional `(B,)` group ids (same id = same image) as `y`,
    `(features, group_ids)`, or as the entry `"group_id"`. Raw strings
    cannot be compiled with XLA: under `jit_compile=True` tokenize in
    `tf.data`.

    Mined hard negatives: the optional entry `"hard_negatives"` holds H
    negative texts of each image, `(B, H)` strings or `(B, H, ...)` token
    inputs (as `kc.callbacks.HardNegativeMiner.with_hard_negatives` adds
    them). They run through the text tower with the batch's texts, and the
    loss receives their `(B, H, D)` embeddings as its `"hard_negatives"`
    state (`CLIPLoss`, `InfoNCELoss` and `NTXentLoss` take it), scored for
    their own image only.

    Example:

    >>> import keras_contrastive as kc
    >>> method = kc.methods.DualEncoder()
    >>> isinstance(method.default_loss(), kc.losses.CLIPLoss)
    True

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", ICML 2021.
    """

    layout = (
        '`{"image": images, "text": texts}`, with optional (B,) group ids as `y` or as '
        'the entry "group_id"'
    )
    labels = ("ignored", "integer")
    y_pred = ("pair",)

    def default_loss(self):
        return CLIPLoss()

    def default_metrics(self):
        return [ContrastiveAccuracy(queries="first_view")]

    def state_names(self, model):
        scale = None if model is None else model.logit_scale
        if scale is None:
            return ()
        return ("temperature", "bias") if isinstance(scale, SigmoidLogitScale) else ("temperature",)

    def loss_hint(self, model):
        if isinstance(model.logit_scale, SigmoidLogitScale):
            return (
                " A kc.layers.SigmoidLogitScale learns SigLIP's temperature and bias: "
                "use kc.losses.SigLIPLoss."
            )
        return ""

    def prepare(self, model, data, training, seed):
        x, y, sample_weight = unpack(data, self.layout)
        if not isinstance(x, dict) or "image" not in x or "text" not in x:
            raise structure_error(self.layout, data)
        if model.jit_compile is True and any(
            text_is_strings(x.get(key)) for key in ("text", "hard_negatives")
        ):
            raise ValueError(
                "Raw tf.string texts cannot be compiled with XLA (`jit_compile=True`). "
                "Tokenize them in tf.data and feed token ids: "
                'dataset.map(lambda x: {**x, "text": model.text_preprocessor(x["text"])}).'
            )
        images = ops.convert_to_tensor(x["image"])
        texts = tf.nest.map_structure(
            lambda t: check_same_batch("text", t, "image", images), x["text"]
        )
        inputs = {"image": images, "text": texts}
        if "hard_negatives" in x:
            check_takes_hard_negatives(model.loss)
            inputs["hard_negatives"] = tf.nest.map_structure(
                lambda t: check_same_batch("hard_negatives", t, "image", images),
                x["hard_negatives"],
            )
        group_ids = y if y is not None else x.get("group_id")
        if group_ids is not None:
            group_ids = flat_ids("group_ids", group_ids, data, self.layout, images)
        if model.augmenter is not None and training:
            inputs["image"] = model.augmenter(images, training=True, seed=seed)
        y_true = None
        if contract_of(model.loss).labels == "integer":
            if group_ids is None:
                raise structure_error(
                    self.layout.replace("optional", "the"),
                    data,
                    f"{type(model.loss).__name__} takes group ids (use_group_ids=True).",
                )
            y_true = group_ids
        return Prepared(inputs, y_true, check_sample_weight(sample_weight, images))

    def towers(self, model, inputs, training):
        """`{"embeddings": (B, 2 + H, D)}`: each image, its text, then its H hard negatives."""
        image = model.embed_image(inputs["image"], training=training)
        text = model.embed_text(inputs["text"], training=training)
        rows = [image[:, None], text[:, None]]
        if "hard_negatives" in inputs:
            rows.append(per_example(model.embed_text, inputs["hard_negatives"], training))
        return {"embeddings": ops.concatenate(rows, axis=1)}

    def finish(self, model, prepared, embedded):
        embeddings, scale = embedded["embeddings"][:, :2], model.logit_scale
        state = {}
        if "hard_negatives" in prepared.inputs:
            state["hard_negatives"] = embedded["embeddings"][:, 2:]
        if scale is not None:
            state["temperature"] = scale.temperature
        if isinstance(scale, SigmoidLogitScale):
            state["bias"] = scale.bias
        y_pred = with_state(embeddings, **state)
        return Step(prepared.y_true, y_pred, embeddings, prepared.sample_weight)


def text_is_strings(texts):
    return tf.is_tensor(texts) and texts.dtype == tf.string
