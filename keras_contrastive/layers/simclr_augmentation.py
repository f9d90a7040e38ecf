"""The SimCLR image augmentation as one vectorized, per-image random layer."""

import math
import warnings

import keras
import tensorflow as tf
from keras import ops

from keras_contrastive.layers import _image_ops
from keras_contrastive.ops import _validation as v

_CROP_ATTEMPTS = 10
# Named columns of the per-image uniform draws, and how many each takes. The table
# is the same whatever the options, so one seed gives the same crops with or
# without, say, rotation.
_DRAWS = {
    "area": _CROP_ATTEMPTS,
    "log_ratio": _CROP_ATTEMPTS,
    "offset": 2,
    "flip": 1,
    "angle": 1,
    "shear": 1,
    "jitter": 1,
    "factors": 4,
    "order": 4,
    "grayscale": 1,
    "blur": 1,
    "sigma": 1,
    "solarize": 1,
}
_SOLARIZE_THRESHOLD = 0.5


@keras.saving.register_keras_serializable(package="keras_contrastive")
class SimCLRAugmentation(keras.layers.Layer):
    """Random resized crop, flip, colour distortion and blur, drawn per image.

    The augmentation of SimCLR (Chen et al. 2020, appendix A), in order: a random
    resized crop (area and aspect ratio drawn per image, 10 attempts then the whole
    image, as torchvision) and horizontal flip, one bilinear resampling to
    `image_size`, then optional shear and rotation of the view, a second one (edge
    pixels extended in both); colour jitter with
    probability `jitter_rate` (brightness, contrast, saturation factors in
    `[1 - 0.8 s, 1 + 0.8 s]`, hue shift in `[-0.2 s, 0.2 s]` turns, in a random order
    per image); grayscale with probability `grayscale_rate`; Gaussian blur with
    probability `blur_rate` (sigma in `blur_sigma` pixels, kernel side about 10% of
    the image side, `2 * (height // 20) + 1` taps as SimCLR's code, so no blur below
    20 pixels); solarization with probability `solarize_rate` (BYOL); additive
    Gaussian noise of `noise_stddev`. Every parameter and every Bernoulli choice is
    drawn independently for each image.

    The colour jitter is one affine colour matrix per image (see
    `_image_ops.colour_matrix`): saturation blends with the luma image (as PIL and
    torchvision) and hue rotates the YIQ chroma plane, instead of going through HSV,
    and values are clipped to [0, 1] once after the whole jitter rather than after
    each step. Brightness is multiplicative (SimCLR v2's `random_brightness`).

    Randomness comes only from the layer's `keras.random.SeedGenerator`, or from the
    `seed` passed to `call` (a shape-`(2,)` integer tensor, as taken by
    `tf.random.stateless_uniform`), which replaces the generator draw: use it for
    per-replica seeds or to replay the same views.

    With `training=False` the layer only resizes the whole image to `image_size`
    (bilinear) and rescales it from `value_range` to [0, 1].

    Args:
        image_size: int or `(height, width)` of the output views.
        value_range: `(low, high)` of the input pixel values. Defaults to `(0, 255)`.
            Integer images must use a range above `(0, 1)`. Images beyond it by
            more than 10% raise an error; [0, 1] images with a range above 1
            warn on eager calls.
        crop_area: `(min, max)` fraction of the image area kept by the crop, in
            (0, 1]. Defaults to `(0.08, 1.0)`.
        aspect_ratio: `(min, max)` width / height of the crop. Defaults to
            `(3 / 4, 4 / 3)`.
        flip_rate: probability of a horizontal flip. Defaults to `0.5`.
        jitter_strength: colour distortion strength `s`. Defaults to `1.0`.
        jitter_rate: probability of the colour jitter. Defaults to `0.8`.
        grayscale_rate: probability of grayscale. Defaults to `0.2`.
        blur_rate: probability of Gaussian blur. Defaults to `0.5`.
        blur_sigma: `(min, max)` blur standard deviation in pixels. Defaults to
            `(0.1, 2.0)`.
        solarize_rate: probability of solarization (`x -> 1 - x` for `x >= 0.5`).
            Defaults to `0.0`.
        noise_stddev: standard deviation of additive Gaussian noise on the [0, 1]
            scale. Defaults to `0.0` (off).
        rotation: largest rotation in degrees, drawn uniformly in
            `[-rotation, rotation]`. Defaults to `0.0` (off).
        shear: largest horizontal shear factor, drawn in `[-shear, shear]`.
            Defaults to `0.0` (off).
        seed: int seed of the layer's `SeedGenerator`, or `None`.
        **kwargs: passed to `keras.layers.Layer`.

    Input shape: `(B, H, W, C)` or `(H, W, C)`, `C` in {1, 3}, any real dtype.
    Output shape: `(B, height, width, C)` or `(height, width, C)`, float in [0, 1].

    Example:

    >>> augment = SimCLRAugmentation(image_size=(32, 32), seed=1)
    >>> images = np.random.randint(0, 256, (8, 40, 40, 3), dtype="uint8")
    >>> augment(images).shape
    TensorShape([8, 32, 32, 3])

    References:
        - Chen et al., 2020. A Simple Framework for Contrastive Learning of Visual
          Representations (SimCLR), appendix A (ImageNet) and B.9 (CIFAR-10).
        - Grill et al., 2020. Bootstrap Your Own Latent (BYOL), for solarization.
    """

    def __init__(
        self,
        image_size,
        value_range=(0, 255),
        crop_area=(0.08, 1.0),
        aspect_ratio=(3 / 4, 4 / 3),
        flip_rate=0.5,
        jitter_strength=1.0,
        jitter_rate=0.8,
        grayscale_rate=0.2,
        blur_rate=0.5,
        blur_sigma=(0.1, 2.0),
        solarize_rate=0.0,
        noise_stddev=0.0,
        rotation=0.0,
        shear=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = v.check_size_pair("image_size", image_size)
        self.value_range = v.check_interval("value_range", value_range, increasing=True)
        self.crop_area = v.check_interval("crop_area", crop_area, min=0, max=1)
        self.aspect_ratio = v.check_interval("aspect_ratio", aspect_ratio, min=0)
        self.blur_sigma = v.check_interval("blur_sigma", blur_sigma, min=0)
        self.flip_rate = v.check_probability("flip_rate", flip_rate)
        self.jitter_rate = v.check_probability("jitter_rate", jitter_rate)
        self.grayscale_rate = v.check_probability("grayscale_rate", grayscale_rate)
        self.blur_rate = v.check_probability("blur_rate", blur_rate)
        self.solarize_rate = v.check_probability("solarize_rate", solarize_rate)
        self.jitter_strength = v.check_non_negative("jitter_strength", jitter_strength)
        self.noise_stddev = v.check_non_negative("noise_stddev", noise_stddev)
        self.rotation = v.check_non_negative("rotation", rotation)
        self.shear = v.check_non_negative("shear", shear)
        self.seed = v.check_seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.built = True

    @classmethod
    def cifar(cls, image_size=(32, 32), **kwargs):
        """The CIFAR-10 recipe of SimCLR (appendix B.9): jitter strength 0.5, no blur.

        Args:
            image_size: output size. Defaults to `(32, 32)`.
            **kwargs: any other `SimCLRAugmentation` argument, overriding the preset.
        """
        kwargs = {"jitter_strength": 0.5, "blur_rate": 0.0, **kwargs}
        return cls(image_size=image_size, **kwargs)

    def call(self, images, training=True, seed=None):
        images = self._to_unit_range(images)
        unbatched = len(images.shape) == 3
        if unbatched:
            images = images[None]
        if training:
            seed = self.seed_generator.next() if seed is None else seed
            images = self._augment(images, seed)
        else:
            images = ops.image.resize(images, self.image_size, interpolation="bilinear")
        if unbatched:
            images = images[0]
        return ops.cast(images, self.compute_dtype)

    def _to_unit_range(self, images):
        """Validates `images` and rescales them from `value_range` to float [0, 1]."""
        images = ops.convert_to_tensor(images)
        if len(images.shape) not in (3, 4):
            raise ValueError(
                "`images` must have shape (batch, height, width, channels) or "
                f"(height, width, channels). Received: images.shape={images.shape}"
            )
        if images.shape[-1] not in (1, 3):
            raise ValueError(
                "`images` must have 1 or 3 channels (last axis). "
                f"Received: images.shape={images.shape}"
            )
        dtype = tf.as_dtype(images.dtype)
        if not (dtype.is_integer or dtype.is_floating):
            raise TypeError(
                f"`images` must be integer or float. Received: images.dtype={dtype.name}"
            )
        low, high = self.value_range
        if dtype.is_integer and (high <= 1 or low < dtype.min or high > dtype.max):
            raise ValueError(
                f"`value_range` must suit {dtype.name} images (e.g. (0, 255) for "
                f"uint8); (0, 1) is for float images. Received: "
                f"value_range={self.value_range}"
            )
        images = ops.cast(self._check_values(images), "float32")
        if low != 0:
            images = images - low
        return images * (1.0 / (high - low))

    def _check_values(self, images):
        """`images`, checked to be non-empty and within `value_range`.

        Values beyond `value_range` by more than 10% of its width (e.g. [0, 255]
        images with `value_range=(0, 1)`) raise a `ValueError` on eager calls
        and an `InvalidArgumentError` in graphs (`tf.data`, `fit`); under XLA
        the assert compiles away. Images of [0, 1] values with a `value_range`
        above 1 (e.g. the default `(0, 255)`), which give nearly black views,
        warn once on eager calls: graphs cannot warn (a host print does not
        compile with XLA). The check is one min and max per call, about 1% of
        the augmentation of a batch.
        """
        height, width = images.shape[-3], images.shape[-2]
        empty = "`images` must have a height and width of at least 1. Received: images.shape"
        if 0 in (height, width):
            raise ValueError(f"{empty}={tuple(images.shape)}")
        if tf.executing_eagerly():
            if images.shape.num_elements():  # two reductions, not a host copy of the batch
                self._check_eager_values(float(ops.min(images)), float(ops.max(images)))
            return images
        low, high = self.value_range
        slack = 0.1 * (high - low)
        checks = []
        if height is None or width is None:
            hw = tf.shape(images)[-3:-1]
            checks.append(tf.debugging.assert_positive(hw, message=f"{empty}[-3:-1]"))
        lowest = ops.cast(ops.min(images), "float32")
        highest = ops.cast(ops.max(images), "float32")
        in_range = ops.logical_and(lowest >= low - slack, highest <= high + slack)
        message = (
            f"`images` have values outside value_range={self.value_range}: pass the "
            "value_range of the images ((0, 255) for [0, 255] values, (0, 1) for [0, 1] "
            "values). Received: values in"
        )
        checks.append(tf.debugging.Assert(in_range, [message, lowest, highest]))
        with tf.control_dependencies(checks):
            return tf.identity(images)

    def _check_eager_values(self, lowest, highest):
        low, high = self.value_range
        slack = 0.1 * (high - low)
        received = f"Received: values in [{lowest:g}, {highest:g}]"
        if highest > high + slack or lowest < low - slack:
            extreme = f"up to {highest:g}" if highest > high + slack else f"down to {lowest:g}"
            raise ValueError(
                f"`images` have values {extreme} but value_range={self.value_range}: pass "
                f"value_range={_covering_range(lowest, highest)}, the range of the images. "
                f"{received}"
            )
        if low >= 0 and high > 1 and low < highest <= 1:
            if not getattr(self, "_warned_unit_range", False):
                self._warned_unit_range = True
                warnings.warn(
                    f"`images` have values up to {highest:g} but value_range="
                    f"{self.value_range}: the views will be nearly black. If the images are "
                    f"in [0, 1], pass value_range=(0, 1). {received}",
                    stacklevel=4,
                )

    def _augment(self, images, seed):
        seeds = tf.random.experimental.stateless_split(seed, alg="philox")
        draw_seed, noise_seed = tf.unstack(seeds)
        batch = ops.shape(images)[0]
        u = _uniform((batch, sum(_DRAWS.values())), draw_seed)
        u = dict(zip(_DRAWS, tf.split(u, list(_DRAWS.values()), axis=1), strict=True))
        # Without rotation or shear the crop leaves the views (B, width, height, C)
        # for the colour steps (per pixel) and the blur, which takes that layout
        # back: two transposes saved (see `_image_ops`).
        transposed = not self._rotates
        images = self._geometry(images, u, transposed)
        images = self._colour(images, u)
        radius = self.image_size[0] // 20
        if self.blur_rate > 0 and radius > 0:
            low, high = self.blur_sigma
            sigma = low + (high - low) * u["sigma"][:, 0]
            sigma = ops.where(u["blur"][:, 0] < self.blur_rate, sigma, 0.0)
            images = _image_ops.gaussian_blur(images, sigma, radius, transposed)
        elif transposed:
            images = _image_ops.swap_axes(images)
        if self.solarize_rate > 0:
            solarize = ops.reshape(u["solarize"] < self.solarize_rate, (-1, 1, 1, 1))
            solarize = ops.logical_and(solarize, images >= _SOLARIZE_THRESHOLD)
            images = ops.where(solarize, 1.0 - images, images)
        if self.noise_stddev > 0:
            u1, u2 = tf.unstack(_uniform((2,) + tuple(ops.shape(images)), noise_seed))
            noise = ops.sqrt(-2.0 * ops.log1p(-u1)) * ops.cos(2.0 * math.pi * u2)
            images = ops.clip(images + self.noise_stddev * noise, 0.0, 1.0)
        return images

    @property
    def _rotates(self):
        """Whether the views are rotated or sheared after the crop."""
        return self.rotation > 0 or self.shear > 0

    def _geometry(self, images, u, transposed):
        shape = ops.cast(ops.shape(images)[1:3], "float32")
        boxes = _image_ops.sample_crop_boxes(
            u["area"], u["log_ratio"], u["offset"], self.crop_area,
            self.aspect_ratio, shape,
        )  # fmt: skip
        flip = u["flip"][:, 0] < self.flip_rate
        images = _image_ops.crop_resize(images, boxes, flip, self.image_size, transposed)
        if self._rotates:
            angle = (2.0 * u["angle"][:, 0] - 1.0) * math.radians(self.rotation)
            shear = (2.0 * u["shear"][:, 0] - 1.0) * self.shear
            images = _image_ops.rotate_shear(images, angle, shear)
        return images

    def _colour(self, images, u):
        if self.jitter_rate == 0 and self.grayscale_rate == 0:
            return images
        s = self.jitter_strength
        jitter = u["jitter"][:, 0] < self.jitter_rate
        low = max(0.0, 1.0 - 0.8 * s)
        factors = low + (1.0 + 0.8 * s - low) * u["factors"][:, :3]
        factors = ops.where(jitter[:, None], factors, 1.0)
        hue = ops.where(jitter, (2.0 * u["factors"][:, 3] - 1.0) * 0.2 * s, 0.0)
        matrix = _image_ops.colour_matrix(
            images,
            brightness=factors[:, 0],
            contrast=factors[:, 1],
            saturation=factors[:, 2],
            hue=hue,
            order=ops.argsort(u["order"], axis=1),
            grayscale=u["grayscale"][:, 0] < self.grayscale_rate,
        )
        return ops.clip(_image_ops.apply_colour_matrix(images, matrix), 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + self.image_size + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": self.image_size,
                "value_range": self.value_range,
                "crop_area": self.crop_area,
                "aspect_ratio": self.aspect_ratio,
                "flip_rate": self.flip_rate,
                "jitter_strength": self.jitter_strength,
                "jitter_rate": self.jitter_rate,
                "grayscale_rate": self.grayscale_rate,
                "blur_rate": self.blur_rate,
                "blur_sigma": self.blur_sigma,
                "solarize_rate": self.solarize_rate,
                "noise_stddev": self.noise_stddev,
                "rotation": self.rotation,
                "shear": self.shear,
                "seed": self.seed,
            }
        )
        return config


def _covering_range(lowest, highest):
    """The usual pixel range that holds `[lowest, highest]`, else that interval."""
    for low, high in ((0, 1), (-1, 1), (0, 255)):
        if low <= lowest and highest <= high * 1.1:
            return (low, high)
    return (lowest, highest)


def _uniform(shape, seed):
    """Uniforms in [0, 1) from Philox integers, identical with and without XLA.

    (`tf.random.stateless_uniform` on floats is not: XLA converts bits differently.)
    """
    bits = tf.random.stateless_uniform(
        shape, seed, minval=0, maxval=2**24, dtype="int32", alg="philox"
    )
    return ops.cast(bits, "float32") / 2**24
