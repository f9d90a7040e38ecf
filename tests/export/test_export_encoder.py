import json
import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrastive as kc

CAPTIONS = ["a red square", "a blue circle", "a green line", "a small dot"]
SIZE = 16


def l2(x):
    x = np.asarray(x, "float64")
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def images(n=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype("float32")


def head():
    return kc.layers.ProjectionHead(hidden_dims=(16,), output_dim=4, batch_norm=False)


def dual_model():
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        CAPTIONS, vocabulary_size=50, sequence_length=6
    )
    text_encoder = kc.encoders.text_transformer(
        vocabulary_size=preprocessor.vocabulary_size,
        sequence_length=6,
        embed_dim=8,
        num_heads=1,
        num_layers=1,
        output_dim=8,
    )
    return kc.ContrastiveModel(
        image_encoder=kc.encoders.small_cnn(input_shape=(SIZE, SIZE, 3), width=2),
        text_encoder=text_encoder,
        image_head=head(),
        text_head=head(),
        text_preprocessor=preprocessor,
    )


def regularized_cnn():
    """A tiny conv encoder with BatchNorm and one L2-regularized kernel."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(1e-3))(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(6)(x), name="tiny_cnn")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One image, one dual and one text SavedModel, and the in-library embeddings."""
    root = tmp_path_factory.mktemp("export")
    model = kc.ContrastiveModel(encoder=regularized_cnn())
    dual = dual_model()
    kc.export.export_encoder(model, root / "image")
    kc.export.export_encoder(dual, root / "dual", modality="dual")
    kc.export.export_encoder(dual, root / "text", modality="text", normalize=False)
    x, big = images(), images(size=SIZE + 4, seed=1)
    pixels = (x * 255).round().astype("uint8")
    expected = {
        "x": x,
        "big": big,
        "pixels": pixels,
        "image": l2(model.embed(x)),
        "image_big": l2(model.embed(tf.image.resize(big, (SIZE, SIZE)))),
        "image_pixels": l2(model.embed(pixels.astype("float32") / 255)),
        "dual_image": l2(dual.embed_image(x)),
        "dual_text": l2(dual.embed_text(tf.constant(CAPTIONS))),
        "text_raw": dual.embed_text(tf.constant(CAPTIONS)).numpy(),
        "l2_penalty": 1e-3
        * sum(
            np.sum(np.square(v.numpy()))
            for v in model.encoder.trainable_variables
            if v.regularizer is not None
        ),
    }
    for name, value in expected.items():
        np.save(root / f"{name}.npy", np.asarray(value))
    return root


LOAD_AND_COMPARE = """
import os
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  the tokenizer ops of text SavedModels

root = os.environ["EXPORT_DIR"]
def expected(name):
    return np.load(os.path.join(root, name + ".npy"))
def check(outputs, name, rows=slice(None)):
    np.testing.assert_allclose(outputs["embedding"], expected(name)[rows], atol=1e-5)

image = tf.saved_model.load(os.path.join(root, "image"))
serve = image.signatures
check(serve["serving_default"](images=tf.constant(expected("x"))), "image")
check(serve["embed_image"](images=tf.constant(expected("big"))), "image_big")
check(serve["embed_image_uint8"](images=tf.constant(expected("pixels"))), "image_pixels")
texts = tf.constant(["a red square", "a blue circle", "a green line", "a small dot"])
dual = tf.saved_model.load(os.path.join(root, "dual")).signatures
check(dual["serving_default"](images=tf.constant(expected("x"))), "dual_image")
check(dual["embed_image"](images=tf.constant(expected("x"))), "dual_image")
check(dual["embed_text"](texts=texts), "dual_text")
text = tf.saved_model.load(os.path.join(root, "text")).signatures["serving_default"]
check(text(texts=texts), "text_raw")
check(text(texts=texts[1:2]), "text_raw", rows=slice(1, 2))

x = expected("x")
for bad in (x[0], x.astype("float64"), x.astype("int32"), x[..., :1]):
    try:
        serve["serving_default"](images=tf.constant(bad))
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
        print("refused:", str(error).replace("\\n", " "))
    else:
        print("accepted", bad.shape, bad.dtype)

# TF Hub's reusable API: inference as served; in training mode, gradients reach every
# trainable variable and batch statistics update the moving averages.
np.testing.assert_allclose(image(x), expected("image"), atol=1e-5)
moving = [v for v in image.variables if not v.trainable]
before = [v.numpy() for v in moving]
with tf.GradientTape() as tape:
    loss = tf.reduce_sum(image(x, training=True) ** 3)
gradients = tape.gradient(loss, image.trainable_variables)
print("gradients", len(image.trainable_variables), sum(g is not None for g in gradients))
assert moving and all(np.any(b != v.numpy()) for b, v in zip(before, moving))
penalty = sum(float(loss()) for loss in image.regularization_losses)
np.testing.assert_allclose(penalty, expected("l2_penalty"), rtol=1e-5)
print("done")
"""


def test_served_embeddings_equal_the_library_and_bad_input_is_refused(exported, consumer):
    out = consumer(LOAD_AND_COMPARE, EXPORT_DIR=str(exported))
    refused = re.findall("refused: .*", out)  # wrong rank, dtype (x2), channels: no broadcast
    assert len(refused) == 4, out
    assert "expected shape [?,?,?,3]" in refused[0] and "expected shape" in refused[3]
    assert "expected to be a float tensor but is a double" in refused[1]
    assert "expected to be a float tensor but is a int32" in refused[2]
    assert "accepted" not in out
    (gradients,) = re.findall(r"gradients (\d+) (\d+)", out)
    assert int(gradients[0]) > 0 and gradients[0] == gradients[1], out
    assert out.strip().endswith("done")


FIT = """
import json, os
import numpy as np
x = np.random.default_rng(0).uniform(size=(16, 16, 16, 3)).astype("float32")
y = (x[..., 0].mean(axis=(1, 2)) > x[..., 1].mean(axis=(1, 2))).astype("int32")
"""

HUB_FIT = (
    FIT
    + """
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

layer = hub.KerasLayer(os.path.join(os.environ["EXPORT_DIR"], "image"), trainable=True)
model = tf_keras.Sequential([tf_keras.Input((16, 16, 3)), layer, tf_keras.layers.Dense(2)])
model.compile(
    tf_keras.optimizers.Adam(0.01),
    tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
before = [v.numpy() for v in layer.trainable_variables]
history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
changed = [bool(np.any(b != v.numpy())) for b, v in zip(before, layer.trainable_variables)]
print(json.dumps({"loss": history.history["loss"], "changed": changed,
                  "regularization_losses": len(layer.losses)}))
"""
)


def test_tensorflow_hub_keras_layer_fine_tunes(exported, consumer):
    out = consumer(HUB_FIT, EXPORT_DIR=str(exported), TF_USE_LEGACY_KERAS="1")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["loss"][-1] < result["loss"][0]
    assert result["changed"] and all(result["changed"])
    assert result["regularization_losses"] == 1


def readme_loader():
    """The Keras 3 loader pattern documented in README.md."""
    readme = open(os.path.join(os.path.dirname(kc.__file__), "..", "README.md")).read()
    section = readme[readme.index("## Export and reuse") :]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return next(block for block in blocks if "class SavedModelEncoder" in block)


def test_keras_3_readme_pattern_fine_tunes(exported, consumer):
    code = (
        readme_loader().split("\nencoder_path = ")[0]  # the class, without the demo part
        + FIT
        + """
encoder = SavedModelEncoder(os.path.join(os.environ["EXPORT_DIR"], "image"))
inputs = keras.Input((16, 16, 3))
model = keras.Model(inputs, keras.layers.Dense(2)(encoder(inputs)))
model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(True))
before = [v.numpy() for v in encoder.trainable_weights]
history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
changed = [bool(np.any(b != v.numpy())) for b, v in zip(before, encoder.trainable_weights)]
print(json.dumps({"loss": history.history["loss"], "changed": changed}))
"""
    )
    result = json.loads(consumer(code, EXPORT_DIR=str(exported)).strip().splitlines()[-1])
    assert result["loss"][-1] < result["loss"][0]
    assert result["changed"] and all(result["changed"])


def saved_model_cli(path):
    """`{signature: {"inputs": {...}, "outputs": {...}}}` from `saved_model_cli show --all`."""
    import subprocess

    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    text = subprocess.run(
        [cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for block in text.split("signature_def['")[1:]:
        name = block.split("'")[0]
        tensors = re.findall(
            r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+"
            r"shape: (.+)",
            block,
        )
        found[name] = {
            f"{kind}:{key}": (dtype, shape.replace(" ", "")) for kind, key, dtype, shape in tensors
        }
    return found


def test_saved_model_cli_lists_the_documented_signatures(exported):
    signatures = saved_model_cli(exported / "dual")
    images = ("DT_FLOAT", "(-1,-1,-1,3)")
    embedding = {"outputs:embedding": ("DT_FLOAT", "(-1,4)")}
    assert set(signatures) - {"__saved_model_init_op"} == {
        "serving_default",
        "embed_image",
        "embed_image_uint8",
        "embed_text",
    }
    assert signatures["serving_default"] == {"inputs:images": images, **embedding}
    assert signatures["embed_image"] == signatures["serving_default"]
    uint8 = ("DT_UINT8", images[1])
    assert signatures["embed_image_uint8"] == {"inputs:images": uint8, **embedding}
    assert signatures["embed_text"] == {"inputs:texts": ("DT_STRING", "(-1)"), **embedding}


class Unbuilt(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(3, 3)
        self.pool = keras.layers.GlobalAveragePooling2D()

    def call(self, x):
        return self.pool(self.conv(x))


def test_unbuilt_encoder_needs_a_call_or_input_signature(tmp_path):
    with pytest.raises(ValueError, match="Call the model once.*input_signature"):
        kc.export.export_encoder(Unbuilt(), tmp_path / "a")
    spec = tf.TensorSpec((None, 8, 8, 1), "float32")
    kc.export.export_encoder(Unbuilt(), tmp_path / "b", input_signature=spec)
    served = tf.saved_model.load(str(tmp_path / "b")).signatures["serving_default"]
    assert served(images=tf.zeros((2, 12, 12, 1)))["embedding"].shape == (2, 3)


def test_bad_arguments_are_refused(tmp_path):
    encoder = regularized_cnn()
    with pytest.raises(ValueError, match="modality.*'audio'"):
        kc.export.export_encoder(encoder, tmp_path, modality="audio")
    with pytest.raises(ValueError, match="text_preprocessor"):
        kc.export.export_encoder(encoder, tmp_path, modality="text")
    with pytest.raises(ValueError, match="dual-encoder"):
        kc.export.export_encoder(kc.ContrastiveModel(encoder=encoder), tmp_path, modality="text")
    with pytest.raises(TypeError, match="input_signature"):
        kc.export.export_encoder(Unbuilt(), tmp_path, input_signature=(None, 8, 8, 1))
