"""Argument checks shared by the encoder builders."""

import numpy as np

from keras_contrastive.ops import _validation as validation


def _is_int(value, minimum):
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= minimum


def check_int(name, value, minimum=1):
    """`value` as an int >= `minimum`: `TypeError` for a non-int, `ValueError` below it."""
    return validation.check_int(name, value, min=minimum)


def check_image_shape(input_shape, minimum=1):
    """`input_shape` as `(height, width, channels)`; height and width may be `None`."""
    valid = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
    if valid:
        height, width, channels = input_shape
        sizes_ok = all(s is None or _is_int(s, minimum) for s in (height, width))
        valid = sizes_ok and _is_int(channels, 1)
    if not valid:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with height and width "
            f">= {minimum} (or None) and channels >= 1. Received: input_shape={input_shape!r}"
        )
    return tuple(input_shape)
