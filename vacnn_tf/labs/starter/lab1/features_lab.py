"""Lab 1 assignment: the log-mel image and the BOVW histogram (docs/labs/lab1-features.md).

The network never hears audio: it sees a 224x224 picture of a log-mel spectrogram and a
histogram of visual words. Write the two functions of this file. The grader compares what
they return with the package's own versions (``vacnn_tf.features.logmel.logmel_image`` and
``vacnn_tf.features.bovw.BovwVocabulary.histograms``) on a few synthetic signals, so calling those
does not count: use numpy, librosa and OpenCV (cv2) directly.

Grade your work from any folder with

    vacnn lab grade 1 DIR

where DIR is the folder holding this file. Each check prints PASS or FAIL and the reason.
"""

from __future__ import annotations

import numpy as np


def log_mel_image(
    waveform: np.ndarray,
    sample_rate: int,
    n_mels: int = 128,
    fmax: float | None = None,
    top_db: float = 80.0,
    n_fft: int = 2048,
    hop_length: int = 512,
    image_size: int = 224,
) -> np.ndarray:
    """The log-mel image of one utterance as the network receives it (paper sections 3.1, 4.2).

    Args:
        waveform: Mono samples, float32, shape `(samples,)`, at `sample_rate`.
        sample_rate: Rate of `waveform` in Hz; the spectrogram is computed at this rate.
        n_mels: Mel bands. Defaults to 128.
        fmax: Upper edge of the highest band in Hz; None means `sample_rate / 2`.
        top_db: Dynamic range in dB: the loudest bin becomes 255, `-top_db` dB below it and
            anything quieter becomes 0. Defaults to 80.
        n_fft: FFT window in samples (the paper's 2048).
        hop_length: Hop between frames in samples (the paper's 512).
        image_size: Side of the square image (the paper's 224).

    Returns:
        uint8 image, shape `(image_size, image_size)`: the lowest band in the bottom row, the
        highest in row 0; the start of the utterance in column 0, its end in the last column
        (every utterance is stretched or squeezed to the full width).

    Raises:
        ValueError: a silent waveform (its mel spectrogram is all zeros).
    """
    # TODO 1: the mel power spectrogram, shape (n_mels, frames): librosa.feature.melspectrogram
    #         with n_fft, hop_length, n_mels, fmin=0.0, fmax and power=2.0.
    # TODO 2: raise ValueError when it is all zeros (a silent waveform).
    # TODO 3: dB relative to the loudest bin, clipped at -top_db:
    #         librosa.power_to_db(mel, ref=np.max, top_db=top_db), values in [-top_db, 0].
    # TODO 4: map [-top_db, 0] dB linearly onto [0, 255].
    # TODO 5: flip the rows, so that the lowest band (mel bin 0) is the bottom row.
    # TODO 6: resize the float32 array to (image_size, image_size) with
    #         cv2.resize(..., interpolation=cv2.INTER_LINEAR), round to the nearest integer,
    #         clip to [0, 255] and return it as uint8.
    raise NotImplementedError


def bovw_histogram(descriptors: np.ndarray, centres: np.ndarray, normalization: str = "l1") -> np.ndarray:
    """The visual-word histogram of one utterance (paper section 3.2, step 3).

    Args:
        descriptors: The KAZE descriptors of one log-mel image, float32 `(n, 64)`; n may be 0.
        centres: The visual words, K-means centres fitted on training descriptors, float32 `(k, 64)`.
        normalization: "l1" (frequencies summing to 1, the default), "l2" (unit Euclidean
            length) or "none" (raw counts).

    Returns:
        float32 `(k,)`: bin j counts the descriptors whose nearest centre (squared Euclidean
        distance) is centre j, normalised as asked. An utterance without descriptors gets
        all zeros, whatever the normalisation.

    Raises:
        ValueError: an unknown `normalization`.
    """
    # TODO 1: reject an unknown normalization with a ValueError that names the allowed values.
    # TODO 2: the squared distance of every descriptor to every centre, shape (n, k)
    #         (broadcasting, or |x|^2 - 2 x.c + |c|^2 computed in float64).
    # TODO 3: each descriptor's nearest centre (argmin over k), then the count per centre
    #         (np.bincount with minlength=k).
    # TODO 4: normalise; a histogram without descriptors stays all zeros (no division by zero).
    raise NotImplementedError
