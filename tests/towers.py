"""Small towers and models shared by the model tests: fast to build, no BatchNorm unless asked."""

import keras
import numpy as np
import tensorflow as tf

import keras_contrastive as kc


def mlp(input_dim=6, output_dim=8, dropout=0.0, name=None):
    """`(B, input_dim) -> (B, output_dim)`: one tanh Dense layer, then optional dropout."""
    inputs = keras.Input((input_dim,))
    x = keras.layers.Dense(output_dim, activation="tanh")(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=3)(x)
    return keras.Model(inputs, x, name=name)


def head(dim=4, batch_norm=False):
    """A `ProjectionHead` with one hidden layer of 8 units, to `dim`."""
    return kc.layers.ProjectionHead(hidden_dims=(8,), output_dim=dim, batch_norm=batch_norm)


# ------------------------------------------------- model modes (XLA, mixed precision)
BATCH = 8
CAPTIONS = ["a red square", "a blue circle", "a green line", "a small dot"]


def features(seed=0):
    """`(BATCH, 6)` float32 inputs of `mlp()`."""
    return np.random.default_rng(seed).normal(size=(BATCH, 6)).astype("float32")


def class_labels():
    """`(BATCH,)` int32 labels of three classes."""
    return (np.arange(BATCH) % 3).astype("int32")


def small_images():
    """`(BATCH, 16, 16, 3)` float32 images in [0, 1]."""
    return np.random.default_rng(0).uniform(size=(BATCH, 16, 16, 3)).astype("float32")


def simclr_model(projection_head):
    """A tiny `small_cnn` SimCLR model with `SimCLRAugmentation` in the step."""
    return kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=4),
        projection_head=projection_head,
        augmenter=kc.layers.SimCLRAugmentation(image_size=16, value_range=(0, 1)),
    )


def clip_model(image_head, text_head):
    """A CLIP model: `mlp()` images, a one-layer text transformer, a learned temperature."""
    preprocessor = kc.layers.TextPreprocessor.from_corpus(
        CAPTIONS, vocabulary_size=50, sequence_length=6, tokenizer="whitespace"
    )
    return kc.ContrastiveModel(
        image_encoder=mlp(),
        text_encoder=kc.encoders.text_transformer(
            preprocessor.vocabulary_size, 6, embed_dim=8, num_heads=1, num_layers=1
        ),
        image_head=image_head,
        text_head=text_head,
        text_preprocessor=preprocessor,
        logit_scale="learnable",
    )


def captions():
    """`(BATCH,)` raw caption strings."""
    return np.array([CAPTIONS[i % 4] for i in range(BATCH)])


def assert_export_holds_the_encoder_only(model, encoder, path):
    """`kc.export.export_encoder(model)` holds `encoder`'s variables only and serves its output."""
    kc.export.export_encoder(model, path)
    loaded = tf.saved_model.load(str(path))
    exported = [v.numpy() for v in loaded.variables]
    own = [v.numpy() for v in encoder.variables]
    assert len(exported) == len(own)
    for value in exported:  # each one is a variable of the encoder
        assert any(value.shape == o.shape and np.array_equal(value, o) for o in own)
    images = np.random.default_rng(0).uniform(size=(3, 8, 8, 3)).astype("float32")
    served = loaded.signatures["serving_default"](images=tf.constant(images))["embedding"]
    want = encoder(images, training=False).numpy()
    want /= np.linalg.norm(want, axis=-1, keepdims=True)
    np.testing.assert_allclose(served, want, atol=1e-5)


class _Interrupt(keras.callbacks.Callback):
    """Raises `RuntimeError("interrupted")` after batch 1 of epoch 1: a kill mid-run."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == (1, 1):
            raise RuntimeError("interrupted")


def resumed_and_straight(fresh, dataset, path, callbacks=None):
    """Two epochs of `fresh()` straight, and killed then resumed by `BackupAndRestore`.

    `callbacks`, optional: a zero-argument factory of a list of fresh callbacks
    for each of the three runs (called after `fresh()`, before `dataset()`).
    Asserts the two runs end with the same weights and returns both models.
    """
    extra = callbacks if callbacks is not None else list
    straight = fresh()
    more = extra()
    straight.fit(dataset(), epochs=2, verbose=0, shuffle=False, callbacks=more)
    backup = kc.callbacks.BackupAndRestore(path, save_freq=2)
    try:
        killed = fresh()
        more = extra()
        killed.fit(
            dataset(), epochs=2, verbose=0, shuffle=False, callbacks=[backup, *more, _Interrupt()]
        )
    except RuntimeError as error:
        assert str(error) == "interrupted"
    else:
        raise AssertionError("the run was not interrupted")
    resumed = fresh()
    more = extra()
    resumed.fit(dataset(), epochs=2, verbose=0, shuffle=False, callbacks=[backup, *more])
    for got, want in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    return resumed, straight


class Record(keras.callbacks.Callback):
    """Calls `fn(model)` before (`when="begin"`) or after every training batch; keeps the values."""

    def __init__(self, fn, when="end"):
        super().__init__()
        self.fn, self.when, self.values = fn, when, []

    def on_train_batch_begin(self, batch, logs=None):
        if self.when == "begin":
            self.values.append(self.fn(self.model))

    def on_train_batch_end(self, batch, logs=None):
        if self.when == "end":
            self.values.append(self.fn(self.model))


def numpy_weights(layers):
    """Every weight of `layers`, in order, as NumPy arrays."""
    return [w.numpy() for layer in layers for w in layer.weights]


def view_pairs(n=16):
    """The first `n` of 32 fixed `(view_1, view_2)` pairs of 6-d features (`mlp()`'s inputs)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    noisy = (x + rng.normal(scale=0.3, size=x.shape)).astype("float32")
    return x[:n], noisy[:n]


def pair_dataset(batch=4, n=16):
    """Batches of `((view_1, view_2),)` of `view_pairs(n)`: two views from tf.data, one input."""
    return tf.data.Dataset.from_tensor_slices((view_pairs(n),)).batch(batch)
