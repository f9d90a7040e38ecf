"""Vectorized per-image image operations behind `SimCLRAugmentation`.

Every function takes a batch `(B, H, W, C)` of float images in [0, 1] and per-image
parameters of leading size `B`, and does the same work for every image (no Python or
`map_fn` loop, no data-dependent shapes), so it runs inside `tf.data`, in a model step
and under XLA. The crop is a separable bilinear gather (whole rows, then whole
columns); colour is one affine colour matrix per image; blur is a batched product
with per-image banded blur matrices, one per axis.

Every separable pass works along axis 1, where a batched matrix product or a row
gather needs no transpose. The crop's second pass therefore leaves the images in
the transposed layout `(B, W, H, C)` when asked (`transposed=True`); the colour
steps work per pixel in either layout, and the blur takes that layout back
(`gaussian_blur(..., transposed=True)`), so the augmentation transposes twice in
all instead of four times (about a fifth of the augmentation's time at 96 px).
"""

import math

import numpy as np
from keras import ops

# ITU-R 601 luma weights, as `tf.image.rgb_to_grayscale` and PIL.
LUMA = np.array([0.299, 0.587, 0.114], dtype="float32")
# RGB -> YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
    dtype="float32",
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype("float32")


def sample_crop_boxes(area, log_ratio, offset, crop_area, aspect_ratio, image_hw):
    """Samples one random-resized-crop box per image, as torchvision does.

    Each image gets `T` attempts (area fraction, log aspect ratio); the first attempt
    whose box fits inside the image is used, and the whole image when none fits.

    Args:
        area: `(B, T)` uniforms in [0, 1) for the area fraction.
        log_ratio: `(B, T)` uniforms in [0, 1) for the log aspect ratio.
        offset: `(B, 2)` uniforms in [0, 1) placing the box (y, x).
        crop_area: `(min, max)` fraction of the image area.
        aspect_ratio: `(min, max)` width / height of the box, in pixels.
        image_hw: `(2,)` float tensor, the input height and width.

    Returns:
        `(y0, x0, h, w)`, each `(B,)`, as fractions of the image height and width.
    """
    lo, hi = crop_area
    a = lo + (hi - lo) * area
    log_lo, log_hi = math.log(aspect_ratio[0]), math.log(aspect_ratio[1])
    r = ops.exp(log_lo + (log_hi - log_lo) * log_ratio)
    w_over_h = image_hw[1] / image_hw[0]
    h = ops.sqrt(a / r * w_over_h)
    w = ops.sqrt(a * r / w_over_h)
    fits = ops.logical_and(h <= 1.0, w <= 1.0)
    first = ops.one_hot(ops.argmax(ops.cast(fits, "int32"), axis=1), area.shape[1])
    any_fits = ops.any(fits, axis=1)
    h = ops.where(any_fits, ops.sum(first * h, axis=1), 1.0)
    w = ops.where(any_fits, ops.sum(first * w, axis=1), 1.0)
    return offset[:, 0] * (1.0 - h), offset[:, 1] * (1.0 - w), h, w


def crop_resize(images, boxes, flip, size, transposed=False):
    """Crops each image to its box, mirrors it where `flip` and resizes it (bilinear).

    Separable: one gather of whole rows, then one of whole columns, each blending
    the two nearest source lines; samples outside the image take the edge pixel.

    Args:
        images: `(B, H, W, C)` float.
        boxes: `(y0, x0, h, w)`, each `(B,)`, fractions of the image side.
        flip: `(B,)` bool, mirror left-right.
        size: `(height, width)` of the output, Python ints.
        transposed: return the columns-first layout of the second pass, for a
            following `gaussian_blur(..., transposed=True)`.

    Returns:
        `(B, height, width, C)` float, or `(B, width, height, C)` where `transposed`.
    """
    y0, x0, h, w = boxes
    shape = ops.shape(images)
    rows = _source_lines(y0, h, size[0], shape[1])
    columns = _source_lines(x0, w, size[1], shape[2])
    columns = ops.where(flip[:, None], ops.flip(columns, axis=1), columns)
    images = _gather_lines(images, rows)
    images = _gather_lines(swap_axes(images), columns)
    return images if transposed else swap_axes(images)


def swap_axes(images):
    """`(B, H, W, C)` -> `(B, W, H, C)`, and back."""
    return ops.transpose(images, (0, 2, 1, 3))


def _source_lines(start, length, out_size, in_size):
    """`(B, out_size)` source coordinates (pixels) of the output pixel centres."""
    centres = (ops.arange(out_size, dtype="float32") + 0.5) / out_size
    in_size = ops.cast(in_size, "float32")
    return (start[:, None] + length[:, None] * centres) * in_size - 0.5


def _gather_lines(images, coords):
    """Linearly interpolates the rows of `(B, H, W, C)` at `(B, h)` float `coords`."""
    batch, height = ops.shape(images)[0], ops.shape(images)[1]
    coords = ops.clip(coords, 0.0, ops.cast(height - 1, "float32"))
    below = ops.floor(coords)
    weight = ops.reshape(coords - below, (batch, -1, 1, 1))
    below = ops.cast(below, "int32")
    above = ops.minimum(below + 1, height - 1)
    offset = ops.arange(batch, dtype="int32")[:, None] * height
    lines = ops.reshape(images, (-1,) + tuple(ops.shape(images)[2:]))
    low, high = ops.take(lines, below + offset, axis=0), ops.take(lines, above + offset, axis=0)
    return low + weight * (high - low)


def rotate_shear(images, angle, shear):
    """Rotates (radians) and shears (`x += shear * y`) each image about its centre.

    One bilinear gather per output pixel; samples outside the image take the
    nearest edge pixel.

    Args:
        images: `(B, H, W, C)` float.
        angle: `(B,)` rotation in radians.
        shear: `(B,)` horizontal shear factor.

    Returns:
        `(B, H, W, C)` float.
    """
    shape = ops.shape(images)
    height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
    px = ops.arange(shape[2], dtype="float32")[None, None, :] + 0.5 - width / 2
    py = ops.arange(shape[1], dtype="float32")[None, :, None] + 0.5 - height / 2
    cos = ops.reshape(ops.cos(angle), (-1, 1, 1))
    sin = ops.reshape(ops.sin(angle), (-1, 1, 1))
    px = px + ops.reshape(shear, (-1, 1, 1)) * py
    x = cos * px - sin * py + width / 2 - 0.5
    y = sin * px + cos * py + height / 2 - 0.5
    return _bilinear_gather(images, y, x)


def _bilinear_gather(images, y, x):
    """Samples `images` at float pixel coordinates `(B, h, w)`, clamped to the edge."""
    batch, in_h, in_w, channels = (ops.shape(images)[i] for i in range(4))
    y = ops.clip(y, 0.0, ops.cast(in_h - 1, "float32"))
    x = ops.clip(x, 0.0, ops.cast(in_w - 1, "float32"))
    y0, x0 = ops.floor(y), ops.floor(x)
    wy, wx = ops.expand_dims(y - y0, -1), ops.expand_dims(x - x0, -1)
    y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
    y1, x1 = ops.minimum(y0 + 1, in_h - 1), ops.minimum(x0 + 1, in_w - 1)
    flat = ops.reshape(images, (-1, channels))
    base = ops.reshape(ops.arange(batch, dtype="int32") * in_h * in_w, (-1, 1, 1))

    def at(yi, xi):
        return ops.take(flat, base + yi * in_w + xi, axis=0)

    top = at(y0, x0) + wx * (at(y0, x1) - at(y0, x0))
    bottom = at(y1, x0) + wx * (at(y1, x1) - at(y1, x0))
    return top + wy * (bottom - top)


def colour_matrix(images, brightness, contrast, saturation, hue, order, grayscale):
    """Per-image affine colour transform of the SimCLR colour distortion.

    Brightness (`x * b`), contrast (`c * (x - mean) + mean`, per-channel mean as
    `tf.image.adjust_contrast`), saturation (blend with the luma image, as PIL and
    torchvision) and hue (rotation of the YIQ chroma plane by `hue` turns) are all
    affine in the pixel value, so they compose, in each image's own `order`, into one
    `(C + 1) x (C + 1)` homogeneous matrix; grayscale (luma in every channel) comes
    last where `grayscale`. Values are not clipped between the steps. With one
    channel, saturation, hue and grayscale are the identity.

    Args:
        images: `(B, H, W, C)` float with `C` in {1, 3}; only its mean is used.
        brightness, contrast, saturation: `(B,)` multiplicative factors (1 = no-op).
        hue: `(B,)` hue shift as a fraction of a turn (0 = no-op).
        order: `(B, 4)` int, a permutation of (brightness, contrast, saturation, hue).
        grayscale: `(B,)` bool.

    Returns:
        `(B, C + 1, C + 1)` float32 matrices acting on `[r, g, b, 1]` column vectors.
    """
    channels = images.shape[-1]
    eye = np.eye(channels, dtype="float32")
    luma = np.outer(np.ones(channels), LUMA if channels == 3 else [1.0])
    zeros = ops.zeros((ops.shape(brightness)[0], channels))  # (B, C)
    batch_eye = eye + zeros[:, :, None]
    mean = ops.mean(ops.mean(images, axis=1), axis=1)  # faster than axis=(1, 2)

    def scaled(matrix, factor):
        return ops.reshape(factor, (-1, 1, 1)) * matrix

    brightness = _homogeneous(scaled(eye, brightness), zeros)
    saturation = _homogeneous(scaled(eye, saturation) + scaled(luma, 1.0 - saturation), zeros)
    hue = _homogeneous(_hue_rotation(hue) if channels == 3 else batch_eye, zeros)
    matrix = _homogeneous(batch_eye, zeros)
    for k in range(4):
        # Contrast pulls towards the mean of the image as transformed so far.
        current_mean = ops.einsum("bij,bj->bi", matrix[:, :channels, :channels], mean)
        current_mean = current_mean + matrix[:, :channels, channels]
        contrast_k = _homogeneous(scaled(eye, contrast), (1.0 - contrast[:, None]) * current_mean)
        steps = (brightness, contrast_k, saturation, hue)
        step = sum(
            ops.where(ops.reshape(order[:, k] == i, (-1, 1, 1)), s, 0.0)
            for i, s in enumerate(steps)
        )
        matrix = ops.matmul(step, matrix)
    gray = _homogeneous(luma + zeros[:, :, None], zeros)
    return ops.where(ops.reshape(grayscale, (-1, 1, 1)), ops.matmul(gray, matrix), matrix)


def _homogeneous(linear, shift):
    """`(B, C, C)` linear part and `(B, C)` shift -> `(B, C + 1, C + 1)` matrix."""
    top = ops.concatenate([linear, shift[:, :, None]], axis=2)
    last_row = np.eye(linear.shape[-1] + 1, dtype="float32")[-1:]
    bottom = ops.zeros_like(top[:, :1, :]) + last_row
    return ops.concatenate([top, bottom], axis=1)


def _hue_rotation(hue):
    """`(B, 3, 3)` RGB matrices rotating the YIQ chroma plane by `hue` turns."""
    theta = 2.0 * math.pi * hue
    cos, sin = ops.cos(theta), ops.sin(theta)
    zero, one = ops.zeros_like(theta), ops.ones_like(theta)
    rotation = ops.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1)
    rotation = ops.reshape(rotation, (-1, 3, 3))
    return ops.einsum("ij,bjk,kl->bil", _YIQ_TO_RGB, rotation, _RGB_TO_YIQ)


def apply_colour_matrix(images, matrix):
    """Applies `(B, C + 1, C + 1)` homogeneous colour matrices to `(B, H, W, C)`.

    Per pixel, so `images` may be in either spatial layout. The shift is added
    tiled along whole rows (`(B, 1, W * C)`): twice as fast as broadcasting a
    `(B, 1, 1, C)` one over the 3-wide channel axis.
    """
    batch, height, width, channels = (ops.shape(images)[i] for i in range(4))
    pixels = ops.reshape(images, (batch, -1, channels))
    linear = ops.transpose(matrix[:, :channels, :channels], (0, 2, 1))
    rows = ops.reshape(ops.matmul(pixels, linear), (batch, height, -1))
    shift = ops.tile(matrix[:, None, :channels, channels], (1, 1, width))
    return ops.reshape(rows + shift, ops.shape(images))


def gaussian_blur(images, sigma, radius, transposed=False):
    """Separable Gaussian blur with a per-image `sigma` and reflect padding.

    Each axis is blurred by a batched matrix product with the image's own banded
    `(n, n)` blur matrix (reflection at the borders folded in), which runs the same
    with or without XLA and suits accelerators. A `sigma` of 0 is the identity.

    Args:
        images: `(B, H, W, C)` float with static `H` and `W`, or `(B, W, H, C)`
            where `transposed` (as `crop_resize(..., transposed=True)` leaves them).
        sigma: `(B,)` standard deviation in pixels, >= 0.
        radius: Python int >= 1, half the kernel width (`2 * radius + 1` taps).
        transposed: whether `images` are `(B, W, H, C)`.

    Returns:
        `(B, H, W, C)` float.
    """
    taps = np.arange(-radius, radius + 1, dtype="float32")
    sigma = ops.reshape(sigma, (-1, 1))
    kernel = ops.where(
        sigma > 0,
        ops.exp(-(taps**2) / (2.0 * ops.maximum(sigma, 1e-6) ** 2)),
        (taps == 0).astype("float32"),
    )
    kernel = kernel / ops.sum(kernel, axis=1, keepdims=True)
    matrices = {  # (B, n, n) banded blur matrices, one set per distinct side
        n: ops.einsum("bt,tij->bij", kernel, _tap_matrices(n, radius))
        for n in set(images.shape[1:3])
    }
    images = _blur_lines(matrices[images.shape[1]], images)
    images = _blur_lines(matrices[images.shape[2]], swap_axes(images))
    return images if transposed else swap_axes(images)


def _blur_lines(matrices, images):
    """Blurs `(B, n, m, C)` along axis 1 with `(B, n, n)` blur matrices."""
    batch, size = ops.shape(images)[0], images.shape[1]
    lines = ops.matmul(matrices, ops.reshape(images, (batch, size, -1)))
    return ops.reshape(lines, ops.shape(images))


def _tap_matrices(size, radius):
    """`(2 r + 1, n, n)` 0/1 matrices: tap `t` of output `i` reads input `j`."""
    source = np.arange(size)[None, :] + np.arange(-radius, radius + 1)[:, None]
    source = np.abs(source)  # reflect at 0 (without repeating the edge)
    source = np.where(source > size - 1, 2 * (size - 1) - source, source)
    source = np.clip(source, 0, size - 1)  # radius >= size: edge pixel
    return np.eye(size, dtype="float32")[source]
