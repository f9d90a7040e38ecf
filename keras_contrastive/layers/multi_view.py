"""Several independently augmented views of each example, stacked on axis 1."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.ops._validation import check_int


@keras.saving.register_keras_serializable(package="keras_contrastive")
class MultiView(keras.layers.Layer):
    """Applies a random augmenter `num_views` times and stacks the views on axis 1.

    Each view is a separate call of `augmenter`, so every view of every image gets
    its own random draw. Without a `seed` in `call`, the views come from the
    augmenter's own seed generator (a seeded augmenter gives reproducible views);
    with a `seed` (a shape-`(2,)` integer tensor) it is split into one seed per view
    and passed to the augmenter's `call(..., seed=...)`, as `SimCLRAugmentation`
    accepts, for per-replica seeds or to replay the same views.

    Args:
        augmenter: a `keras.layers.Layer` whose `call` takes `training` (and `seed`,
            to use the `seed` override), e.g. `SimCLRAugmentation`.
        num_views: number of views, >= 1. Defaults to `2`.
        **kwargs: passed to `keras.layers.Layer`.

    Input shape: whatever `augmenter` takes, `(B, ...)` or one unbatched example.
    Output shape: `(B, num_views) + view_shape`, or `(num_views,) + view_shape` for
    an unbatched example (rank-3 image).

    Example:

    >>> import keras_contrastive as kc
    >>> views = kc.layers.MultiView(kc.layers.SimCLRAugmentation(image_size=(32, 32), seed=1))
    >>> images = np.random.randint(0, 256, (8, 32, 32, 3), dtype="uint8")
    >>> views(images).shape
    TensorShape([8, 2, 32, 32, 3])

    References:
        - Chen et al., 2020. A Simple Framework for Contrastive Learning of Visual
          Representations (SimCLR), two views per image.
        - Caron et al., 2020. Unsupervised Learning of Visual Features by
          Contrasting Cluster Assignments (SwAV), several views per image.
    """

    def __init__(self, augmenter, num_views=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(augmenter, keras.layers.Layer):
            raise TypeError(
                "`augmenter` must be a keras.layers.Layer. "
                f"Received: augmenter={augmenter!r} of type {type(augmenter).__name__}"
            )
        self.augmenter = augmenter
        self.num_views = check_int("num_views", num_views, min=1)
        self.built = True

    def call(self, inputs, training=True, seed=None):
        if seed is None:
            views = [self.augmenter(inputs, training=training) for _ in range(self.num_views)]
        else:
            seeds = tf.random.experimental.stateless_split(seed, self.num_views, alg="philox")
            views = [
                self.augmenter(inputs, training=training, seed=seeds[i])
                for i in range(self.num_views)
            ]
        axis = 0 if len(views[0].shape) == 3 else 1
        return ops.stack(views, axis=axis)

    def compute_output_shape(self, input_shape):
        view = tuple(self.augmenter.compute_output_shape(input_shape))
        if len(view) == 3:
            return (self.num_views,) + view
        return view[:1] + (self.num_views,) + view[1:]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "augmenter": keras.saving.serialize_keras_object(self.augmenter),
                "num_views": self.num_views,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["augmenter"] = keras.saving.deserialize_keras_object(config["augmenter"])
        return cls(**config)
