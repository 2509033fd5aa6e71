"""Attention layers of the VACNN and of the fine-tuned VACNN + BOVW (paper section 3).

- :class:`ChannelAttention` -- eq. (1): a shared two-layer MLP (reduction ``r``) over the
  global average- and max-pooled descriptors, summed, sigmoid.
- :class:`SpatialAttention` -- eq. (2): channel-wise mean and max, concatenated, an unbiased
  7x7 convolution to one channel, sigmoid.
- :class:`VisualAttention` -- the paper's VA module: both attentions applied separately to the
  same input and the two refined maps summed (section 3.1).
- :class:`CBAM` -- Woo et al.'s sequential variant (channel, then spatial on the channel-refined
  map), the Table 3 ablation.
- :class:`LuongContextAttention` -- eqs. (4)-(8): Luong multiplicative attention of the BOVW
  hidden states, fused with the VACNN feature sequence ``O`` (section 3.2).

The normalisation layers (:class:`BandStandardization`, :class:`ChannelStatsGroupNormalization`)
live in :mod:`vacnn_tf.models.normalization` and are importable from here too.

Every layer is registered for ``.keras`` serialization under the package ``vacnn_tf`` so that
``keras.models.load_model(path, safe_mode=True)`` rebuilds it without custom_objects; importing
this module registers them all.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import initializers, ops, regularizers

from vacnn_tf.models.layer_checks import PACKAGE, check_feature_map, check_positive_int
# Re-exported: the normalisation layers were defined here first, and importing this module is
# what registers every custom layer for loading (``import vacnn_tf.models.layers``).
from vacnn_tf.models.normalization import BandStandardization, ChannelStatsGroupNormalization

__all__ = [
    "BandStandardization", "CBAM", "ChannelAttention", "ChannelStatsGroupNormalization", "LuongContextAttention", "SpatialAttention",
    "VisualAttention",
]


class _Gate(keras.layers.Layer):
    """A layer that scales its input by weights in (0, 1) computed from it (``attention``)."""

    def attention(self, inputs: Any) -> Any:
        raise NotImplementedError

    def call(self, inputs: Any) -> Any:
        return inputs * self.attention(inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChannelAttention(_Gate):
    """Channel-wise visual attention, paper eq. (1) (CBAM's channel module).

    ``F_c = sigmoid(W1(relu(W0(GAP(V)))) + W1(relu(W0(GMP(V)))))``; the layer returns the
    channel-refined map ``V * F_c``. The hidden ReLU is CBAM's (the paper's eq. 1 omits it,
    its text cites CBAM's bottleneck); both MLP layers carry biases, as in CBAM.

    Args:
        reduction: MLP reduction ratio ``r`` (paper: 4); the hidden width is ``C // r``.
        kernel_initializer: Initializer of the two MLP kernels. Defaults to "glorot_uniform".
        bias_initializer: Initializer of the two MLP biases. Defaults to "zeros".
        kernel_regularizer: Optional regularizer of the MLP kernels (the paper's L2).
        **kwargs: Base layer arguments (name, dtype, ...).

    Call arguments:
        inputs: Feature map ``V`` of shape `(batch, H, W, C)`.

    Returns:
        The refined map ``V * F_c``, shape `(batch, H, W, C)`.
    """

    def __init__(
        self,
        reduction: int = 4,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reduction = check_positive_int("reduction", reduction)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def build(self, input_shape: tuple) -> None:
        channels = check_feature_map(self, input_shape)
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(
                f"ChannelAttention needs at least `reduction` channels so that the hidden layer "
                f"has C // r >= 1 units. Received: channels={channels}, reduction={self.reduction}"
            )
        self.hidden_kernel = self.add_weight(
            name="hidden_kernel", shape=(channels, hidden),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.hidden_bias = self.add_weight(name="hidden_bias", shape=(hidden,), initializer=self.bias_initializer)
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(hidden, channels),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.output_bias = self.add_weight(name="output_bias", shape=(channels,), initializer=self.bias_initializer)

    def attention(self, inputs: Any) -> Any:
        """The channel weights ``F_c`` of eq. (1), shape `(batch, 1, 1, C)`, in (0, 1)."""
        # GAP and GMP descriptors stacked into one (batch, 2, C) tensor so that the shared MLP
        # runs once on both (same maths as two calls, one matmul instead of two).
        pooled = ops.stack([ops.mean(inputs, axis=(1, 2)), ops.max(inputs, axis=(1, 2))], axis=1)
        hidden = ops.relu(ops.matmul(pooled, self.hidden_kernel) + self.hidden_bias)
        logits = ops.sum(ops.matmul(hidden, self.output_kernel) + self.output_bias, axis=1)
        return ops.sigmoid(logits)[:, None, None, :]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialAttention(_Gate):
    """Spatial visual attention, paper eq. (2).

    ``F_s = sigmoid(conv_kxk([mean_c(V); max_c(V)]))`` with an unbiased k x k convolution,
    stride 1, "same" zero padding, one output channel; the layer returns ``V * F_s``.

    Args:
        kernel_size: Odd convolution size ``k`` (paper: 7).
        kernel_initializer: Initializer of the (k, k, 2, 1) kernel. Defaults to "glorot_uniform".
        kernel_regularizer: Optional regularizer of the kernel (the paper's L2).
        **kwargs: Base layer arguments.

    Call arguments:
        inputs: Feature map ``V`` of shape `(batch, H, W, C)`.

    Returns:
        The refined map ``V * F_s``, shape `(batch, H, W, C)`.
    """

    def __init__(
        self,
        kernel_size: int = 7,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            # An even kernel with "same" padding would shift the map by half a pixel.
            raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
        self.kernel_size = kernel_size
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def build(self, input_shape: tuple) -> None:
        check_feature_map(self, input_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, 2, 1),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )

    def attention(self, inputs: Any) -> Any:
        """The spatial weights ``F_s`` of eq. (2), shape `(batch, H, W, 1)`, in (0, 1)."""
        pooled = ops.concatenate(
            [ops.mean(inputs, axis=-1, keepdims=True), ops.max(inputs, axis=-1, keepdims=True)], axis=-1
        )
        return ops.sigmoid(ops.conv(pooled, self.kernel, strides=1, padding="same"))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
        }


class _AttentionPair(keras.layers.Layer):
    """Shared arguments and sublayers of the two ways of combining eq. (1) and eq. (2)."""

    def __init__(
        self,
        reduction: int = 4,
        kernel_size: int = 7,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reduction = reduction
        self.kernel_size = kernel_size
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        # The sublayers check their own arguments, so bad values fail here, at construction.
        # They inherit `trainable`: a frozen module reloaded from its config must stay frozen.
        self.channel = ChannelAttention(
            reduction, kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
            dtype=self.dtype_policy, trainable=self.trainable, name="channel",
        )
        self.spatial = SpatialAttention(
            kernel_size, kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
            dtype=self.dtype_policy, trainable=self.trainable, name="spatial",
        )

    def build(self, input_shape: tuple) -> None:
        check_feature_map(self, input_shape)
        self.channel.build(input_shape)
        self.spatial.build(input_shape)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "kernel_size": self.kernel_size,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class VisualAttention(_AttentionPair):
    """The paper's VA module (section 3.1): channel and spatial attention in parallel, summed.

    ``VA(V) = V * F_c(V) + V * F_s(V)`` with ``F_c`` from eq. (1) and ``F_s`` from eq. (2),
    both computed from the same input (unlike :class:`CBAM`). Computed as
    ``V * (F_c + F_s)``: the same sum with one full-size multiply fewer.

    Args:
        reduction: Channel-attention MLP reduction ``r`` (paper: 4).
        kernel_size: Spatial-attention convolution size (paper: 7).
        kernel_initializer: Initializer of the MLP and convolution kernels.
        kernel_regularizer: Optional regularizer of those kernels (the paper's L2).
        **kwargs: Base layer arguments.

    Call arguments:
        inputs: Feature map of shape `(batch, H, W, C)`.

    Returns:
        The refined map, shape `(batch, H, W, C)`.
    """

    def call(self, inputs: Any) -> Any:
        return inputs * (self.channel.attention(inputs) + self.spatial.attention(inputs))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CBAM(_AttentionPair):
    """Convolutional block attention module (Woo et al. 2018), the Table 3 ablation.

    Sequential: ``V' = V * F_c(V)`` (eq. 1), then ``V'' = V' * F_s(V')`` (eq. 2 on the
    channel-refined map). Same weights, and so the same parameter count, as
    :class:`VisualAttention`; only the wiring differs.

    Args:
        reduction: Channel-attention MLP reduction ``r`` (paper: 4).
        kernel_size: Spatial-attention convolution size (paper: 7).
        kernel_initializer: Initializer of the MLP and convolution kernels.
        kernel_regularizer: Optional regularizer of those kernels.
        **kwargs: Base layer arguments.

    Call arguments:
        inputs: Feature map of shape `(batch, H, W, C)`.

    Returns:
        The refined map, shape `(batch, H, W, C)`.
    """

    def call(self, inputs: Any) -> Any:
        refined = self.channel(inputs)
        return self.spatial(refined)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LuongContextAttention(keras.layers.Layer):
    """Luong multiplicative context attention fused with the VACNN features, eqs. (4)-(8).

    With the BOVW hidden states ``h_s`` (n states of size d) and ``h_t = h_s[:, -1]``, their
    last state::

        score_s = h_t^T W h_s                      (4)  W: (d, d), unbiased
        alpha_s = softmax_s(score_s)               (5)  over the n states
        C_t     = sum_s alpha_s h_s                (6)
        av_t    = tanh(W_c [C_t; h_t])             (7)  W_c: (2d, d), unbiased as in Luong et al.
        avf_s   = tanh(O_s * av_t) + h_s           (8)  element-wise, av_t broadcast over s

    Args:
        kernel_initializer: Initializer of ``W`` and ``W_c``. Defaults to "glorot_uniform".
        kernel_regularizer: Optional regularizer of ``W`` and ``W_c`` (the paper's L2).
        gate_bias: None (the paper's eq. 7, unbiased), or the initial value of a trained bias
            ``b`` added in eq. (7), ``av_t = tanh(W_c [C_t; h_t] + b)`` (ours): with small
            ``h_s`` the unbiased ``av_t`` starts near 0 and eq. (8) near ``h_s``, so the VACNN
            features ``O`` pass from the first step only once ``W_c`` has grown; ``b`` = 1 lets
            ``tanh(b)`` = 0.76 of them through from the start.
        **kwargs: Base layer arguments.

    Call arguments:
        inputs: A list ``[O, h_s]``: the VACNN feature sequence ``O`` of shape
            `(batch, n, d)` (paper: `(batch, 49, 288)`) and the BOVW hidden states ``h_s`` of
            the same shape.

    Returns:
        ``avf``, shape `(batch, n, d)`.
    """

    def __init__(
        self,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        gate_bias: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        if gate_bias is not None and (isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float))):
            raise ValueError(f"`gate_bias` must be None or a number. Received: gate_bias={gate_bias!r}")
        self.gate_bias = None if gate_bias is None else float(gate_bias)

    def _check_shapes(self, input_shape: Any) -> tuple[tuple, tuple]:
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 or not all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            raise ValueError(
                "LuongContextAttention expects a list of two inputs [O, h_s]. "
                f"Received: input_shape={input_shape}"
            )
        features, states = (tuple(s) for s in input_shape)
        if len(features) != 3 or len(states) != 3 or states[-1] is None:
            raise ValueError(
                "LuongContextAttention expects O and h_s of rank 3, (batch, n, d), with a known d. "
                f"Received: input_shape={input_shape}"
            )
        mismatch = [(a, b) for a, b in zip(features[1:], states[1:]) if a is not None and b is not None and a != b]
        if mismatch:
            raise ValueError(
                f"O and h_s must have the same (n, d) shape. Received: input_shape={input_shape}"
            )
        return features, states

    def build(self, input_shape: Any) -> None:
        _, states = self._check_shapes(input_shape)
        depth = int(states[-1])
        self.score_kernel = self.add_weight(
            name="score_kernel", shape=(depth, depth),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.combine_kernel = self.add_weight(
            name="combine_kernel", shape=(2 * depth, depth),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.combine_bias = None if self.gate_bias is None else self.add_weight(
            name="combine_bias", shape=(depth,), initializer=initializers.Constant(self.gate_bias),
        )

    def scores(self, hidden_states: Any) -> Any:
        """The attention weights ``alpha`` of eqs. (4)-(5), shape `(batch, n)`, rows sum to 1."""
        last = hidden_states[:, -1, :]  # h_t: (batch, d)
        query = ops.matmul(last, self.score_kernel)  # h_t^T W: (batch, d)
        logits = ops.einsum("bd,bsd->bs", query, hidden_states)
        return ops.softmax(logits, axis=-1)

    def call(self, inputs: Any) -> Any:
        features, hidden_states = inputs
        alpha = self.scores(hidden_states)
        context = ops.einsum("bs,bsd->bd", alpha, hidden_states)  # eq. (6)
        combined = ops.concatenate([context, hidden_states[:, -1, :]], axis=-1)
        gate = ops.matmul(combined, self.combine_kernel)
        if self.combine_bias is not None:
            gate = gate + self.combine_bias
        attention_vector = ops.tanh(gate)  # eq. (7)
        return ops.tanh(features * attention_vector[:, None, :]) + hidden_states  # eq. (8)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        features, states = self._check_shapes(input_shape)
        return tuple(a if a is not None else b for a, b in zip(features, states))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "gate_bias": self.gate_bias,
        }
