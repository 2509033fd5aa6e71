"""The log-mel image of :mod:`vacnn_tf.features.logmel`, computed with TensorFlow ops inside the SavedModel.

The exported ``waveform`` signatures (:mod:`vacnn_tf.serving.export`) run this graph, so TF Serving
alone turns audio into probabilities. Each step copies what :func:`vacnn_tf.features.logmel.logmel_image`
does with librosa and OpenCV:

1. cut to the example's ``length``; silence trim as ``librosa.effects.trim`` (``trim_db``: frame
   RMS with ``n_fft``/``hop_length``, dB against the loudest frame); cut to ``max_seconds``,
   zero-pad to ``pad_seconds``;
2. ``librosa.stft`` with ``center=True``: ``n_fft // 2`` zeros each side (librosa's
   ``pad_mode="constant"``), scipy's periodic Hann window, the FFT in float64 and the result
   cast to complex64 as librosa does for float32 audio;
3. power spectrum times librosa's own mel filterbank (``librosa.filters.mel``, Slaney scale and
   norm), built once at export time and stored in the graph as a constant, so the two paths share
   the very same matrix;
4. ``librosa.power_to_db(ref=np.max, amin=1e-10, top_db)``, the linear map onto 0-255, the flip
   that puts low frequencies at the bottom;
5. OpenCV's ``INTER_LINEAR`` resize to ``image_size`` x ``image_size`` (half-pixel centres,
   edge samples repeated), written out as gathers and a lerp, then ``np.rint`` and the clip to
   0-255 that turn the Python image into uint8.

Only ``features.resize = linear`` (the default) is written in TensorFlow; for the other OpenCV
modes :func:`waveform_support` says why there is no waveform signature.

Resampling stays outside: the graph takes audio at ``features.sample_rate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vacnn_tf.config import FeatureConfig
from vacnn_tf.features.logmel import SILENCE_PEAK

# librosa.power_to_db's floor (amplitude_to_db's 1e-5, squared, in librosa.effects.trim).
_AMIN_POWER = 1e-10


def waveform_support(config: FeatureConfig) -> str | None:
    """None if the graph reproduces these feature settings, else the reason it cannot."""
    if config.resize != "linear":
        return (f"features.resize={config.resize!r}: only OpenCV's linear resize is written in "
                "TensorFlow, so the model has no waveform signature (the logmel one is unchanged)")
    return None


def _constants(config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """The Hann window and the mel filterbank, from the very functions librosa.stft and
    librosa.feature.melspectrogram call."""
    import librosa

    window = librosa.filters.get_window("hann", config.n_fft, fftbins=True).astype(np.float64)
    mel = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                              fmin=config.fmin, fmax=config.fmax)  # float32 (n_mels, 1 + n_fft // 2)
    return window, mel


def _trim(tf: Any, y: Any, config: FeatureConfig) -> Any:
    """``librosa.effects.trim(y, top_db=trim_db, frame_length=n_fft, hop_length=hop_length)``."""
    n_fft, hop = config.n_fft, config.hop_length
    padded = tf.pad(y, [[n_fft // 2, n_fft // 2]])  # librosa.feature.rms: center=True, zeros
    frames = tf.signal.frame(padded, n_fft, hop)
    rms = tf.sqrt(tf.reduce_mean(tf.square(frames), axis=-1))
    # amplitude_to_db(rms, ref=np.max) > -top_db, in power form as librosa computes it
    power = tf.square(rms)
    db = 10.0 * _log10(tf, tf.maximum(power, _AMIN_POWER)) - 10.0 * _log10(
        tf, tf.maximum(tf.reduce_max(power), _AMIN_POWER))
    loud = tf.where(db > -config.trim_db)[:, 0]
    # peak >= SILENCE_PEAK (checked before) keeps the loudest frame at 0 dB: never empty
    start = tf.cast(loud[0], tf.int32) * hop
    end = tf.minimum(tf.shape(y)[0], (tf.cast(loud[-1], tf.int32) + 1) * hop)
    return y[start:end]


def _log10(tf: Any, x: Any) -> Any:
    return tf.math.log(x) / tf.math.log(tf.constant(10.0, x.dtype))


def _linear_taps(tf: Any, in_size: Any, out_size: int) -> tuple[Any, Any, Any]:
    """OpenCV INTER_LINEAR's source indices and weights along one axis (cv::resize, float path)."""
    scale = tf.cast(in_size, tf.float64) / out_size
    x = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale - 0.5
    left = tf.floor(x)
    frac = tf.cast(x - left, tf.float32)
    left = tf.cast(left, tf.int32)
    # before the first sample and past the last one OpenCV repeats the edge sample
    frac = tf.where(left < 0, 0.0, frac)
    frac = tf.where(left >= in_size - 1, 0.0, frac)
    left = tf.clip_by_value(left, 0, in_size - 1)
    right = tf.minimum(left + 1, in_size - 1)
    return left, right, frac


def _resize_linear(tf: Any, image: Any, size: int) -> Any:
    """``cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)`` of a float32 (H, W) image."""
    shape = tf.shape(image)
    # OpenCV interpolates along the rows first (horizontal pass), then down the columns
    left, right, frac = _linear_taps(tf, shape[1], size)
    rows = tf.gather(image, left, axis=1) * (1.0 - frac) + tf.gather(image, right, axis=1) * frac
    top, bottom, frac = _linear_taps(tf, shape[0], size)
    frac = frac[:, None]
    return tf.gather(rows, top, axis=0) * (1.0 - frac) + tf.gather(rows, bottom, axis=0) * frac


class WaveformFeatures:
    """Log-mel images from padded waveform batches with TensorFlow ops (see the module docstring).

    Args:
        config: The feature settings the model was trained with.

    Raises:
        ValueError: settings the graph does not reproduce (:func:`waveform_support`).
    """

    def __init__(self, config: FeatureConfig) -> None:
        reason = waveform_support(config)
        if reason is not None:
            raise ValueError(reason)
        self.config = config
        self.window, self.mel_basis = _constants(config)
        self.min_samples = max(1, int(np.ceil(config.min_duration * config.sample_rate)))

    def check(self, waveform: Any, length: Any) -> list[Any]:
        """Assertions on a batch: what :func:`vacnn_tf.features.logmel.load_audio` refuses.

        A failed one stops the call with an InvalidArgument error naming the reason (TF Serving
        answers it with HTTP 400).
        """
        import tensorflow as tf

        width = tf.shape(waveform, out_type=length.dtype)[1]
        mask = tf.sequence_mask(length, tf.cast(width, length.dtype), dtype=tf.float32)
        inside = tf.abs(waveform) * mask
        sr = self.config.sample_rate
        return [
            tf.debugging.assert_less_equal(length, width, message="length must not exceed the waveform's width"),
            tf.debugging.assert_greater_equal(
                length, tf.cast(self.min_samples, length.dtype),
                message=f"too short: every length must be at least features.min_duration="
                        f"{self.config.min_duration} s ({self.min_samples} samples at {sr} Hz)"),
            tf.debugging.assert_all_finite(inside, message="waveform contains NaN or infinite samples"),
            tf.debugging.assert_greater_equal(
                tf.reduce_max(inside, axis=1), tf.constant(SILENCE_PEAK, tf.float32),
                message=f"all silent: an example's peak is below {SILENCE_PEAK} (-80 dBFS)"),
        ]

    def image(self, y: Any) -> Any:
        """Float32 (image_size, image_size) pixel values 0-255 (whole numbers) of one waveform."""
        import tensorflow as tf

        c = self.config
        if c.trim_db is not None:
            y = _trim(tf, y, c)
        if c.max_seconds is not None:
            y = y[: int(round(c.max_seconds * c.sample_rate))]
        if c.pad_seconds is not None:
            y = tf.pad(y, [[0, tf.maximum(int(round(c.pad_seconds * c.sample_rate)) - tf.shape(y)[0], 0)]])
        half = c.n_fft // 2
        frames = tf.signal.frame(tf.pad(tf.cast(y, tf.float64), [[half, half]]), c.n_fft, c.hop_length)
        spectrum = tf.cast(tf.signal.rfft(frames * self.window), tf.complex64)  # (frames, bins)
        power = tf.square(tf.abs(spectrum))
        mel = tf.matmul(tf.constant(self.mel_basis), power, transpose_b=True)  # (n_mels, frames)
        db = 10.0 * _log10(tf, tf.maximum(mel, _AMIN_POWER)) - 10.0 * _log10(
            tf, tf.maximum(tf.reduce_max(mel), _AMIN_POWER))
        db = tf.maximum(db, tf.reduce_max(db) - c.top_db)
        pixels = (db + c.top_db) * (255.0 / c.top_db)
        if c.low_freq_at_bottom:
            pixels = tf.reverse(pixels, axis=[0])
        resized = _resize_linear(tf, pixels, c.image_size)
        return tf.clip_by_value(tf.round(resized), 0.0, 255.0)

    def __call__(self, waveform: Any, length: Any) -> Any:
        """Images of a batch: float32 ``(batch, image_size, image_size, 1)``, as the logmel input.

        Args:
            waveform: float32 ``(batch, samples)`` at ``features.sample_rate``, zero-padded.
            length: int32 ``(batch,)``, each example's own number of samples.
        """
        import tensorflow as tf

        size = self.config.image_size
        with tf.control_dependencies(self.check(waveform, length)):
            waveform = tf.identity(waveform)
        images = tf.map_fn(lambda args: self.image(args[0][: args[1]]), (waveform, length),
                           fn_output_signature=tf.TensorSpec([size, size], tf.float32))
        return images[..., None]
