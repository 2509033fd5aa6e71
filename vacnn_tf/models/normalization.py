"""Normalisation layers: per-mel-band standardisation of the input images, and Keras's
GroupNormalization computed the faster way for serving.

- :class:`BandStandardization` -- per-mel-band standardisation of the input images with
  training-set statistics (ours, ``model.input_norm: band``).
- :class:`ChannelStatsGroupNormalization` -- Keras's GroupNormalization with the statistics
  gathered per channel first: the same normalisation, fewer passes over a feature map; the
  exported serving graph uses it (:mod:`vacnn_tf.serving.export`).

Both are registered for ``.keras`` serialization under the package ``vacnn_tf``, as the layers of
:mod:`vacnn_tf.models.layers` (which imports and re-exports them), so saved models keep loading
with ``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from vacnn_tf.models.layer_checks import PACKAGE, check_feature_map

__all__ = ["BandStandardization", "ChannelStatsGroupNormalization"]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelStatsGroupNormalization(keras.layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` computed from per-channel statistics, for serving.

    The same normalisation, weights and config as the parent; only the order of the sums
    differs. Keras reshapes a `(batch, H, W, C)` map into groups and reduces over three
    strided axes, which TensorFlow's CPU kernels run slowly (at batch 1 the eight
    GroupNormalizations took about as long as the ten convolutions). Here each channel's
    mean and mean square are two contiguous reductions over `H*W`, a group's statistics
    average its channels' (``var = E[x^2] - E[x]^2``, accumulated in float32 and clipped at 0),
    and the output is one scale and shift per channel. Measured in docs/performance.md.

    Only channels-last 4-D inputs with a known channel count take this path; anything else
    falls back to the parent's computation.
    """

    def call(self, inputs: Any) -> Any:
        channels = inputs.shape[-1]
        if len(inputs.shape) != 4 or self.axis not in (-1, 3) or channels is None:
            return super().call(inputs)
        groups, per_group = self.groups, channels // self.groups
        # float32 statistics whatever the compute dtype, as the parent does (bfloat16 sums overflow).
        x = ops.cast(inputs, "float32")
        batch = ops.shape(x)[0]
        flat = ops.reshape(x, (batch, -1, channels))
        mean = ops.reshape(ops.mean(flat, axis=1), (batch, groups, per_group))
        mean_square = ops.reshape(ops.mean(ops.square(flat), axis=1), (batch, groups, per_group))
        group_mean = ops.mean(mean, axis=-1, keepdims=True)
        group_var = ops.maximum(ops.mean(mean_square, axis=-1, keepdims=True) - ops.square(group_mean), 0.0)
        scale = ops.broadcast_to(ops.rsqrt(group_var + self.epsilon), (batch, groups, per_group))
        if self.scale:
            scale = scale * ops.reshape(ops.cast(self.gamma, "float32"), (groups, per_group))
        shift = -group_mean * scale
        if self.center:
            shift = shift + ops.reshape(ops.cast(self.beta, "float32"), (groups, per_group))
        scale = ops.reshape(scale, (batch, 1, 1, channels))
        shift = ops.reshape(shift, (batch, 1, 1, channels))
        return ops.cast(x * scale + shift, self.compute_dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BandStandardization(keras.layers.Layer):
    """Per-row (per mel band) standardisation of `(batch, H, W, C)` images, not in the paper.

    Each image row ``h`` becomes ``(x - mean[h]) / std[h]`` with ``mean`` and ``std`` the row's
    statistics over the training images (all their columns and channels), stored as
    non-trainable weights so that the saved model and the serving graph carry them. A band
    that is loud in every utterance no longer dominates the first convolutions; what is left
    is how an utterance departs from the corpus's average spectrum, the information a linear
    model on per-band statistics uses (docs/results.md). Until :meth:`adapt` is called it
    is the identity (mean 0, std 1).
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise ValueError(f"`epsilon` must be a positive number. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape: tuple) -> None:
        check_feature_map(self, input_shape)
        if input_shape[1] is None:
            raise ValueError(f"BandStandardization needs a known image height. Received: input_shape={tuple(input_shape)}")
        rows = int(input_shape[1])
        self.mean = self.add_weight(name="mean", shape=(rows,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(rows,), initializer="ones", trainable=False)

    def adapt(self, images: Any, scale: float = 1.0, offset: float = 0.0) -> None:
        """Set the statistics from ``images * scale + offset``, the values this layer receives.

        ``images`` is `(N, H, W[, C])`, e.g. the uint8 training images and the preceding
        rescaling's factors; it is read in chunks, so a large corpus needs no float copy.
        """
        import numpy as np

        shape = np.shape(images)
        if len(shape) < 3 or shape[0] == 0:
            raise ValueError(f"BandStandardization.adapt needs a non-empty (N, H, W[, C]) array. Received: shape={shape}")
        if not self.built:
            self.build((None, shape[1], 1, 1))
        if shape[1] != self.mean.shape[0]:
            raise ValueError(f"BandStandardization.adapt needs images of {self.mean.shape[0]} rows. Received: shape={shape}")
        total = np.zeros(shape[1])
        squares = np.zeros(shape[1])
        for start in range(0, shape[0], 256):
            x = np.asarray(images[start:start + 256], dtype=np.float64) * scale + offset
            x = x.reshape(x.shape[0], x.shape[1], -1)
            total += x.sum(axis=(0, 2))
            squares += np.square(x).sum(axis=(0, 2))
        count = shape[0] * int(np.prod(shape[2:]))
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0)) + self.epsilon
        self.mean.assign(mean.astype("float32"))
        self.std.assign(std.astype("float32"))

    def call(self, inputs: Any) -> Any:
        mean = ops.cast(ops.reshape(self.mean, (1, -1, 1, 1)), inputs.dtype)
        std = ops.cast(ops.reshape(self.std, (1, -1, 1, 1)), inputs.dtype)
        return (inputs - mean) / std

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}
