"""Argument checks shared by the encoder builders."""

import numpy as np


def _is_int(value, minimum):
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= minimum


def check_int(name, value, minimum=1):
    """Raises `ValueError` unless `value` is an int >= `minimum`."""
    if not _is_int(value, minimum):
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")
    return int(value)


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
