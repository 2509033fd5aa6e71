"""What the custom layers of :mod:`~vacnn_tf.models.layers` and :mod:`~vacnn_tf.models.normalization`
share: the package they are registered under and their argument and shape checks."""

from __future__ import annotations

from typing import Any

import keras

# The registered names (``vacnn_tf>ClassName``) are what ``.keras`` files store: keep them.
PACKAGE = "vacnn_tf"


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def check_feature_map(layer: keras.layers.Layer, input_shape: tuple) -> int:
    """Check a (batch, H, W, C) shape with a known C; returns C."""
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} expects a channels-last feature map (batch, height, width, "
            f"channels) with a known channel count. Received: input_shape={tuple(input_shape)}"
        )
    return int(input_shape[-1])
