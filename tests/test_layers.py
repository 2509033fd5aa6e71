"""The attention layers against NumPy references of the paper's equations (1), (2), (4)-(8)."""

from __future__ import annotations

import numpy as np
import pytest

from layer_testing import random_inputs, randomize_weights, run_layer_test
from vacnn_tf.models.layers import (
    BandStandardization, CBAM, ChannelAttention, ChannelStatsGroupNormalization, LuongContextAttention, SpatialAttention, VisualAttention,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def np_channel_weights(v: np.ndarray, w0: np.ndarray, b0: np.ndarray, w1: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Eq. (1): F_c = sigmoid(W1(W0(GAP(V))) + W1(W0(GMP(V)))), with CBAM's hidden ReLU; (B, C)."""

    def mlp(d: np.ndarray) -> np.ndarray:
        return np.maximum(d @ w0 + b0, 0.0) @ w1 + b1

    return _sigmoid(mlp(v.mean(axis=(1, 2))) + mlp(v.max(axis=(1, 2))))


def np_spatial_weights(v: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Eq. (2): F_s = sigmoid(conv7x7([AvgPool_c(V); MaxPool_c(V)])), zero "same" padding; (B, H, W)."""
    pooled = np.stack([v.mean(axis=-1), v.max(axis=-1)], axis=-1)  # (B, H, W, 2)
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(pooled, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    batch, height, width, _ = pooled.shape
    out = np.zeros((batch, height, width))
    for i in range(height):
        for j in range(width):
            window = padded[:, i : i + k, j : j + k, :]  # (B, k, k, 2)
            out[:, i, j] = np.einsum("bxyc,xyc->b", window, kernel[..., 0])
    return _sigmoid(out)


def np_luong(o: np.ndarray, h_s: np.ndarray, w: np.ndarray, w_c: np.ndarray,
             gate_bias: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. (4)-(8), one sample and one state at a time (``gate_bias`` added in eq. 7); returns (avf, alpha)."""
    batch, n, _ = h_s.shape
    avf = np.zeros_like(o, dtype=np.float64)
    alphas = np.zeros((batch, n))
    for b in range(batch):
        h_t = h_s[b, -1]
        scores = np.array([h_t @ w @ h_s[b, s] for s in range(n)])  # (4)
        alpha = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()  # (5)
        context = sum(alpha[s] * h_s[b, s] for s in range(n))  # (6)
        av_t = np.tanh(np.concatenate([context, h_t]) @ w_c + gate_bias)  # (7)
        for s in range(n):
            avf[b, s] = np.tanh(o[b, s] * av_t) + h_s[b, s]  # (8)
        alphas[b] = alpha
    return avf, alphas


@pytest.mark.parametrize(
    "layer_cls, kwargs, input_shape, output_shape, num_weights",
    [
        (ChannelAttention, {"reduction": 4}, (2, 6, 5, 8), (2, 6, 5, 8), 4),
        (SpatialAttention, {"kernel_size": 7}, (2, 6, 5, 8), (2, 6, 5, 8), 1),
        (VisualAttention, {"reduction": 2, "kernel_size": 3, "kernel_regularizer": "l2"}, (2, 6, 5, 8), (2, 6, 5, 8), 5),
        (CBAM, {"reduction": 4, "kernel_size": 5}, (2, 6, 5, 8), (2, 6, 5, 8), 5),
        (LuongContextAttention, {"kernel_regularizer": "l2"}, [(2, 9, 6), (2, 9, 6)], (2, 9, 6), 2),
        (LuongContextAttention, {"gate_bias": 1.0}, [(2, 9, 6), (2, 9, 6)], (2, 9, 6), 3),
        (ChannelStatsGroupNormalization, {"groups": 4, "epsilon": 1e-5}, (2, 6, 5, 8), (2, 6, 5, 8), 2),
        (BandStandardization, {"epsilon": 1e-2}, (2, 6, 5, 1), (2, 6, 5, 1), 2),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_layer_contract(layer_cls, kwargs, input_shape, output_shape, num_weights, tmp_path):
    run_layer_test(layer_cls, kwargs, input_shape, output_shape, num_weights, tmp_path)


def test_channel_attention_matches_eq1():
    x = random_inputs((3, 5, 4, 8))
    layer = ChannelAttention(reduction=4)
    layer.build(x.shape)
    randomize_weights(layer)
    w0, b0, w1, b1 = layer.get_weights()
    expected = np_channel_weights(x, w0, b0, w1, b1)
    np.testing.assert_allclose(np.asarray(layer.attention(x))[:, 0, 0, :], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer(x)), x * expected[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_spatial_attention_matches_eq2():
    x = random_inputs((2, 9, 8, 5))
    layer = SpatialAttention(kernel_size=7)
    layer.build(x.shape)
    randomize_weights(layer)
    (kernel,) = layer.get_weights()
    expected = np_spatial_weights(x, kernel)
    np.testing.assert_allclose(np.asarray(layer.attention(x))[..., 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer(x)), x * expected[..., None], rtol=1e-5, atol=1e-6)


def test_visual_attention_sums_the_two_refined_maps():
    x = random_inputs((2, 7, 6, 8))
    layer = VisualAttention(reduction=4, kernel_size=7)
    layer.build(x.shape)
    randomize_weights(layer)
    w0, b0, w1, b1, kernel = layer.get_weights()
    expected = x * np_channel_weights(x, w0, b0, w1, b1)[:, None, None, :] + x * np_spatial_weights(x, kernel)[..., None]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_cbam_is_sequential():
    x = random_inputs((2, 7, 6, 8))
    layer = CBAM(reduction=4, kernel_size=7)
    layer.build(x.shape)
    randomize_weights(layer)
    w0, b0, w1, b1, kernel = layer.get_weights()
    refined = x * np_channel_weights(x, w0, b0, w1, b1)[:, None, None, :]
    expected = refined * np_spatial_weights(refined, kernel)[..., None]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)
    parallel = VisualAttention(reduction=4, kernel_size=7)
    parallel.build(x.shape)
    parallel.set_weights(layer.get_weights())
    assert not np.allclose(np.asarray(parallel(x)), expected)


def test_luong_attention_matches_eqs_4_to_8():
    o, h_s = random_inputs([(3, 6, 5), (3, 6, 5)], seed=3)
    layer = LuongContextAttention()
    layer.build([o.shape, h_s.shape])
    randomize_weights(layer, scale=0.5)
    w, w_c = layer.get_weights()
    assert w.shape == (5, 5) and w_c.shape == (10, 5)
    expected, alpha = np_luong(o, h_s, w, w_c)
    np.testing.assert_allclose(np.asarray(layer.scores(h_s)), alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer([o, h_s])), expected, rtol=1e-5, atol=1e-5)


def test_luong_attention_gate_bias_opens_eq_8_to_the_vacnn_states():
    """gate_bias b: av_t = tanh(W_c [C_t; h_t] + b), b trained and initialised at the value."""
    o, h_s = random_inputs([(3, 6, 5), (3, 6, 5)], seed=4)
    h_s = 0.01 * h_s  # the near-silent BOVW states of a fresh branch
    unbiased, biased = LuongContextAttention(), LuongContextAttention(gate_bias=1.0)
    out_unbiased, out_biased = np.asarray(unbiased([o, h_s])), np.asarray(biased([o, h_s]))
    w, w_c, b = biased.get_weights()
    np.testing.assert_allclose(b, np.ones(5))
    np.testing.assert_allclose(np_luong(o, h_s, w, w_c, b)[0], out_biased, rtol=1e-5, atol=1e-5)
    # how much of O reaches the output: about tanh(1) of it with the bias, almost none without
    assert np.abs(out_biased - h_s).mean() > 10 * np.abs(out_unbiased - h_s).mean()
    assert [v.name for v in biased.trainable_weights] == ["score_kernel", "combine_kernel", "combine_bias"]
    with pytest.raises(ValueError, match="Received: gate_bias='1'"):
        LuongContextAttention(gate_bias="1")


def test_luong_attention_paper_shape():
    o, h_s = random_inputs([(2, 49, 288), (2, 49, 288)])
    layer = LuongContextAttention()
    assert tuple(layer([o, h_s]).shape) == (2, 49, 288)
    assert layer.count_params() == 288 * 288 + 2 * 288 * 288  # W (eq. 4) and W_c (eq. 7), unbiased


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ChannelAttention(reduction=0), "Received: reduction=0"),
        (lambda: ChannelAttention(reduction=True), "Received: reduction=True"),
        (lambda: SpatialAttention(kernel_size=4), "Received: kernel_size=4"),
        (lambda: VisualAttention(kernel_size=-1), "Received: kernel_size=-1"),
        (lambda: CBAM(reduction=2.5), "Received: reduction=2.5"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_input_shapes_are_named():
    with pytest.raises(ValueError, match="Received: input_shape"):
        ChannelAttention()(np.zeros((2, 5, 8), "float32"))
    with pytest.raises(ValueError, match="Received: channels=2, reduction=4"):
        VisualAttention(reduction=4)(np.zeros((1, 3, 3, 2), "float32"))
    with pytest.raises(ValueError, match="same \\(n, d\\) shape"):
        LuongContextAttention()([np.zeros((1, 4, 3), "float32"), np.zeros((1, 4, 5), "float32")])
    with pytest.raises(ValueError, match="list of two inputs"):
        LuongContextAttention()(np.zeros((1, 4, 3), "float32"))


@pytest.mark.parametrize("shape, groups, offset", [
    ((3, 7, 5, 16), 8, 0.0),
    ((2, 12, 12, 32), 8, 4.0),  # a mean well away from 0: the E[x^2] - E[x]^2 form must still hold
    ((1, 4, 9, 6), 2, -2.0),
    ((2, 5, 5, 8), 8, 0.0),  # one channel per group: instance normalisation
])
def test_channel_stats_group_norm_matches_keras(shape, groups, offset):
    import keras

    x = random_inputs(shape, seed=3) * 2.0 + offset
    reference = keras.layers.GroupNormalization(groups=groups, epsilon=1e-5)
    reference.build(shape)
    randomize_weights(reference, seed=4, scale=1.0)
    fast = ChannelStatsGroupNormalization.from_config(reference.get_config())
    fast.build(shape)
    fast.set_weights(reference.get_weights())
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(reference(x)), atol=2e-5, rtol=0)


def test_channel_stats_group_norm_keeps_the_compute_dtype():
    import keras

    x = random_inputs((2, 6, 6, 8), seed=5)
    reference = keras.layers.GroupNormalization(groups=4, dtype="mixed_bfloat16")
    fast = ChannelStatsGroupNormalization(groups=4, dtype="mixed_bfloat16")
    out, expected = fast(x), reference(x)
    assert out.dtype == expected.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(out, "float32"), np.asarray(expected, "float32"), atol=0.02)


def test_band_standardization_uses_each_rows_training_statistics(tmp_path):
    import keras

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (37, 12, 9), dtype=np.uint8)
    images[:, :4] //= 8  # quiet low bands, as in a log-mel image
    layer = BandStandardization(name="band")
    x = rng.uniform(0, 1, (3, 12, 9, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(x)), x, rtol=1e-6)  # identity until adapted
    layer.adapt(images, scale=1 / 255)  # chunked sums: 37 images read in one chunk; the rows matter
    values = images.astype(np.float64) / 255
    mean, std = values.mean(axis=(0, 2)), values.std(axis=(0, 2)) + 1e-3
    np.testing.assert_allclose(layer.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(layer.std.numpy(), std, rtol=1e-4)
    expected = (x - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-4, atol=1e-4)
    # the statistics are weights: a saved model carries them
    inputs = keras.Input((12, 9, 1))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="12 rows"):
        layer.adapt(images[:, :10])
    with pytest.raises(ValueError, match="non-empty"):
        layer.adapt(images[:0])
