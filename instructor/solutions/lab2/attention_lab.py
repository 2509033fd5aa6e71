"""Lab 2 assignment: channel attention, spatial attention and the VA module as Keras layers
(docs/labs/lab2-attention.md).

The paper's visual-attention (VA) module computes two sets of weights in (0, 1) from a feature
map ``V`` of shape `(batch, H, W, C)`, both from the same ``V``, and sums the two refined maps:

    F_c(V) = sigmoid(MLP(GAP(V)) + MLP(GMP(V)))            eq. (1), shape (batch, 1, 1, C)
    MLP(x) = relu(x W0 + b0) W1 + b1                        one MLP, shared by both descriptors
    F_s(V) = sigmoid(conv7x7([mean_c(V); max_c(V)]))       eq. (2), shape (batch, H, W, 1)
    VA(V)  = V * F_c(V) + V * F_s(V)

(GAP, GMP: average and maximum over H and W; mean_c, max_c: over the channels, kept as one
channel each.) Write the three layers below with Keras 3 (``keras.ops``, backend-neutral). The
grader copies the weights of the package's layers (vacnn_tf.models.layers) into yours and compares
the outputs, so create exactly the weights each ``build`` docstring lists, with those shapes
and in that order; using vacnn_tf.models.layers itself does not count.

Grade your work from any folder with

    vacnn lab grade 2 DIR

where DIR is the folder holding this file. Each check prints PASS or FAIL and the reason.
"""

### INSTRUCTOR: the solution. The starter (vacnn_tf/labs/starter/lab2/) is generated from this
### INSTRUCTOR: file by `python -m vacnn_tf.labs.starters`; edit here, then regenerate.

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _check_feature_map(layer: keras.layers.Layer, input_shape: tuple) -> int:
    """The channel count of a `(batch, H, W, C)` shape; a ValueError for any other shape."""
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(f"{type(layer).__name__} expects a (batch, height, width, channels) feature map. "
                         f"Received: input_shape={tuple(input_shape)}")
    return int(input_shape[-1])


@keras.saving.register_keras_serializable(package="lab2")
class ChannelAttention(keras.layers.Layer):
    """Channel attention, paper eq. (1).

    Args:
        reduction: The MLP's reduction ratio r (paper: 4); its hidden layer has C // r units.
        **kwargs: Base layer arguments (name, dtype, ...).

    Call arguments:
        inputs: Feature map ``V``, shape `(batch, H, W, C)`.

    Returns:
        ``V * F_c(V)``, shape `(batch, H, W, C)`.
    """

    def __init__(self, reduction: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"`reduction` must be a positive integer. Received: reduction={reduction!r}")
        self.reduction = reduction

    def build(self, input_shape: tuple) -> None:
        """Create, with ``self.add_weight`` and in this order (C: the input's channels, h = C // r):

        ``hidden_kernel`` `(C, h)`, ``hidden_bias`` `(h,)`, ``output_kernel`` `(h, C)`,
        ``output_bias`` `(C,)`; kernels "glorot_uniform", biases "zeros".
        """
        ### TODO 1: C from input_shape (_check_feature_map rejects shapes that are not (batch, H, W, C));
        ###         raise ValueError when C // reduction < 1.
        ### TODO 2: the four weights, as attributes (self.hidden_kernel = self.add_weight(...), ...).
        ### BEGIN SOLUTION
        channels = _check_feature_map(self, input_shape)
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(f"ChannelAttention needs at least `reduction` channels. "
                             f"Received: channels={channels}, reduction={self.reduction}")
        self.hidden_kernel = self.add_weight(name="hidden_kernel", shape=(channels, hidden), initializer="glorot_uniform")
        self.hidden_bias = self.add_weight(name="hidden_bias", shape=(hidden,), initializer="zeros")
        self.output_kernel = self.add_weight(name="output_kernel", shape=(hidden, channels), initializer="glorot_uniform")
        self.output_bias = self.add_weight(name="output_bias", shape=(channels,), initializer="zeros")
        ### END SOLUTION

    def attention(self, inputs: Any) -> Any:
        """The channel weights ``F_c(V)`` of eq. (1), shape `(batch, 1, 1, C)`, values in (0, 1)."""
        ### TODO 3: GAP and GMP over the spatial axes (1, 2): two (batch, C) descriptors.
        ### TODO 4: the shared MLP on each (ops.matmul, ops.relu), the two outputs summed, ops.sigmoid.
        ### TODO 5: reshape to (batch, 1, 1, C) so that it broadcasts over H and W.
        ### BEGIN SOLUTION
        def mlp(x: Any) -> Any:
            hidden = ops.relu(ops.matmul(x, self.hidden_kernel) + self.hidden_bias)
            return ops.matmul(hidden, self.output_kernel) + self.output_bias

        logits = mlp(ops.mean(inputs, axis=(1, 2))) + mlp(ops.max(inputs, axis=(1, 2)))
        return ops.sigmoid(logits)[:, None, None, :]
        ### END SOLUTION

    def call(self, inputs: Any) -> Any:
        ### TODO 6: the channel-refined map V * F_c(V).
        ### BEGIN SOLUTION
        return inputs * self.attention(inputs)
        ### END SOLUTION

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        ### TODO 7: the base config plus every constructor argument, so that
        ###         ChannelAttention.from_config(layer.get_config()) rebuilds the same layer.
        ### BEGIN SOLUTION
        return {**super().get_config(), "reduction": self.reduction}
        ### END SOLUTION


@keras.saving.register_keras_serializable(package="lab2")
class SpatialAttention(keras.layers.Layer):
    """Spatial attention, paper eq. (2).

    Args:
        kernel_size: The odd size k of the k x k convolution (paper: 7).
        **kwargs: Base layer arguments.

    Call arguments:
        inputs: Feature map ``V``, shape `(batch, H, W, C)`.

    Returns:
        ``V * F_s(V)``, shape `(batch, H, W, C)`.
    """

    def __init__(self, kernel_size: int = 7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            # an even kernel with "same" padding would shift the map by half a pixel
            raise ValueError(f"`kernel_size` must be a positive odd integer. Received: kernel_size={kernel_size!r}")
        self.kernel_size = kernel_size

    def build(self, input_shape: tuple) -> None:
        """Create ``kernel`` `(k, k, 2, 1)` ("glorot_uniform"), the only weight: the convolution has no bias."""
        ### TODO 1: check the shape (_check_feature_map) and create self.kernel.
        ### BEGIN SOLUTION
        _check_feature_map(self, input_shape)
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, self.kernel_size, 2, 1),
                                      initializer="glorot_uniform")
        ### END SOLUTION

    def attention(self, inputs: Any) -> Any:
        """The spatial weights ``F_s(V)`` of eq. (2), shape `(batch, H, W, 1)`, values in (0, 1)."""
        ### TODO 2: the mean and the max over the channel axis, each kept as one channel (keepdims=True),
        ###         concatenated in that order: (batch, H, W, 2).
        ### TODO 3: ops.conv with self.kernel, strides 1, padding "same" (the map keeps its H x W), then ops.sigmoid.
        ### BEGIN SOLUTION
        pooled = ops.concatenate([ops.mean(inputs, axis=-1, keepdims=True), ops.max(inputs, axis=-1, keepdims=True)],
                                 axis=-1)
        return ops.sigmoid(ops.conv(pooled, self.kernel, strides=1, padding="same"))
        ### END SOLUTION

    def call(self, inputs: Any) -> Any:
        ### TODO 4: the spatially refined map V * F_s(V).
        ### BEGIN SOLUTION
        return inputs * self.attention(inputs)
        ### END SOLUTION

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        ### TODO 5: the base config plus kernel_size.
        ### BEGIN SOLUTION
        return {**super().get_config(), "kernel_size": self.kernel_size}
        ### END SOLUTION


@keras.saving.register_keras_serializable(package="lab2")
class VisualAttention(keras.layers.Layer):
    """The paper's VA module (section 3.1): channel and spatial attention side by side, summed.

    Args:
        reduction: The channel attention's reduction ratio (paper: 4).
        kernel_size: The spatial attention's convolution size (paper: 7).
        **kwargs: Base layer arguments.

    Call arguments:
        inputs: Feature map ``V``, shape `(batch, H, W, C)`.

    Returns:
        ``V * F_c(V) + V * F_s(V)``, shape `(batch, H, W, C)`.
    """

    def __init__(self, reduction: int = 4, kernel_size: int = 7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reduction = reduction
        self.kernel_size = kernel_size
        # Sublayers made here check their own arguments, so a bad value fails at construction.
        self.channel = ChannelAttention(reduction, name="channel")
        self.spatial = SpatialAttention(kernel_size, name="spatial")

    def build(self, input_shape: tuple) -> None:
        ### TODO 1: check the shape and build both sublayers on it (self.channel.build(...), ...).
        ### BEGIN SOLUTION
        _check_feature_map(self, input_shape)
        self.channel.build(input_shape)
        self.spatial.build(input_shape)
        ### END SOLUTION

    def call(self, inputs: Any) -> Any:
        ### TODO 2: both attentions computed from the same inputs, the two refined maps summed.
        ###         (CBAM, the paper's Table 3 ablation, chains them instead: spatial attention on V * F_c(V).)
        ### BEGIN SOLUTION
        return inputs * (self.channel.attention(inputs) + self.spatial.attention(inputs))
        ### END SOLUTION

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        ### TODO 3: the base config plus reduction and kernel_size.
        ### BEGIN SOLUTION
        return {**super().get_config(), "reduction": self.reduction, "kernel_size": self.kernel_size}
        ### END SOLUTION
