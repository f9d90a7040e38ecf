"""KerasCV augmentation layers as `ContrastiveModel(augmenter=...)` (the `cv` extra).

KerasCV's layers take no `seed=` in `call`, so the model does not pass its
per-step seeds: each view comes from the layer's own seed generator (set with
the layer's `seed=` argument).
"""

import keras
import numpy as np
import pytest

import keras_contrastive as kc

keras_cv = pytest.importorskip("keras_cv")


def fit_one_step(augmenter):
    images = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    model = kc.ContrastiveModel(
        encoder=kc.encoders.small_cnn(input_shape=(16, 16, 3), width=8),
        projection_head=kc.layers.ProjectionHead(hidden_dims=(), output_dim=8),
        augmenter=augmenter,
        seed=0,
    )
    model.compile(optimizer="adam", loss=kc.losses.NTXentLoss(temperature=0.5))
    before = [w.copy() for w in model.encoder.get_weights()]
    history = model.fit(images, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert 0.0 <= history.history["contrastive_accuracy"][0] <= 1.0
    after = model.encoder.get_weights()
    assert any(not np.allclose(b, a) for b, a in zip(before, after, strict=True))
    return model, images


def test_keras_cv_flip_trains_as_the_augmenter():
    flip = keras_cv.layers.RandomFlip("horizontal", seed=1)
    model, images = fit_one_step(flip)
    views = keras.ops.convert_to_numpy(model.make_views(images))
    assert views.shape == (8, 2, 16, 16, 3)
    # Each view is the image or its mirror, drawn independently per view.
    for image, pair in zip(images, views, strict=True):
        for view in pair:
            assert np.allclose(view, image) or np.allclose(view, image[:, ::-1])
    assert not np.allclose(views[:, 0], views[:, 1])


def test_a_pipeline_of_keras_cv_layers_in_keras_sequential():
    """Several KerasCV layers chained by `keras.Sequential`, a layer the model can call.

    (`keras_cv.layers.Augmenter` is not a Keras layer under Keras 3: use Sequential.)
    """
    pipeline = keras.Sequential(
        [
            keras_cv.layers.RandomFlip("horizontal", seed=1),
            keras_cv.layers.RandomBrightness(factor=0.2, value_range=(0, 1), seed=2),
        ]
    )
    model, images = fit_one_step(pipeline)
    views = keras.ops.convert_to_numpy(model.make_views(images))
    assert views.shape == (8, 2, 16, 16, 3)
    assert not np.allclose(views[:, 0], views[:, 1])
    assert np.all((0.0 <= views) & (views <= 1.0))
