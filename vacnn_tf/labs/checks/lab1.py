"""Lab 1 checks: ``log_mel_image`` against :func:`vacnn_tf.features.logmel.logmel_image` and
``bovw_histogram`` against :meth:`vacnn_tf.features.bovw.BovwVocabulary.histograms`.

The signals are synthetic voiced sounds (harmonics of a gliding pitch, a syllable-like
envelope, a little noise), 0.5 to 3 s at 16 kHz: a few hundred milliseconds of CPU in all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from vacnn_tf.labs.grading import Check, Fixtures, StudentCode, fail

REFERENCES = ("vacnn_tf.features.logmel.logmel_image", "vacnn_tf.features.logmel.file_image", "vacnn_tf.features.bovw.BovwVocabulary")
RATE = 16000
# A student's image may differ from the reference by rounding: on average at most this many
# grey levels, and no more than 1% of the pixels by more than 4.
MEAN_TOLERANCE = 1.0


def voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A voiced, vowel-like test signal with a pitch glide and a syllable rhythm, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = f0 * (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    harmonics = sum(np.sin(h * phase) / h for h in range(1, 16))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t) ** 2
    wave = 0.3 * harmonics * envelope * np.minimum(1.0, t / 0.05) + 0.003 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


class Lab1Fixtures(Fixtures):
    @cached_property
    def waves(self) -> dict[str, np.ndarray]:
        return {"1.2 s": voice(1.2, 140.0, 0), "0.5 s": voice(0.5, 220.0, 1), "3.0 s": voice(3.0, 110.0, 2)}

    def reference_image(self, wave: np.ndarray, **settings: float | int | None) -> np.ndarray:
        from vacnn_tf.config import FeatureConfig
        from vacnn_tf.features.logmel import logmel_image

        return logmel_image(wave, RATE, FeatureConfig(sample_rate=RATE, **settings))

    @cached_property
    def descriptors(self) -> np.ndarray:
        """KAZE descriptors of the reference image of the 3 s signal."""
        from vacnn_tf.config import BovwConfig
        from vacnn_tf.features.bovw import extract_descriptors

        desc = extract_descriptors(self.reference_image(self.waves["3.0 s"]), BovwConfig())
        if len(desc) < 20:
            raise RuntimeError(f"the test image has only {len(desc)} KAZE descriptors")
        return desc

    @cached_property
    def centres(self) -> np.ndarray:
        """12 visual words: means of random groups of descriptors (no K-means needed for a test)."""
        rng = np.random.default_rng(3)
        groups = rng.integers(0, 12, size=len(self.descriptors))
        return np.stack([self.descriptors[groups == g].mean(axis=0) if np.any(groups == g)
                         else self.descriptors[g] for g in range(12)]).astype(np.float32)

    def reference_histogram(self, descriptors: np.ndarray, normalization: str) -> np.ndarray:
        from vacnn_tf.config import BovwConfig
        from vacnn_tf.features.bovw import BovwVocabulary

        vocabulary = BovwVocabulary(self.centres, BovwConfig(k=len(self.centres), normalization=normalization), 0, 0)
        return vocabulary.histograms([descriptors])[0]


def fixtures(tmp: Path) -> Lab1Fixtures:
    return Lab1Fixtures(tmp)


def _image(code: StudentCode, wave: np.ndarray, **settings: float | int | None) -> np.ndarray:
    image = code.call("log_mel_image", wave, RATE, **settings)
    if not isinstance(image, np.ndarray):
        fail(f"log_mel_image returned {type(image).__name__}, not a numpy array")
    size = settings.get("image_size", 224)
    if image.shape != (size, size):
        fail(f"log_mel_image returned shape {image.shape}; expected ({size}, {size})")
    if image.dtype != np.uint8:
        fail(f"log_mel_image returned dtype {image.dtype}; expected uint8 (grey levels 0-255)")
    return image


def _compare(image: np.ndarray, reference: np.ndarray, what: str) -> None:
    diff = np.abs(image.astype(np.int16) - reference.astype(np.int16))
    if diff.mean() <= MEAN_TOLERANCE and np.mean(diff > 4) <= 0.01:
        return
    hints = []
    if np.abs(image[::-1].astype(np.int16) - reference).mean() <= MEAN_TOLERANCE:
        hints.append("the image is upside down: the lowest band belongs in the bottom row")
    elif np.abs(image.T.astype(np.int16) - reference).mean() <= MEAN_TOLERANCE:
        hints.append("rows and columns are swapped: rows are mel bands, columns are frames")
    elif image.max() < 250:
        hints.append(f"its brightest pixel is {image.max()}: the loudest bin should be white (255)")
    elif np.mean(image == 255) > np.mean(reference == 255) + 0.05:
        hints.append(f"{np.mean(image == 255):.0%} of its pixels are white, {np.mean(reference == 255):.0%} of the "
                     "reference's: is the dB scale relative to the loudest bin (ref=np.max)?")
    elif image.mean() > reference.mean() + 20:
        hints.append("it is brighter overall: are quiet bins clipped at -top_db and mapped to 0?")
    elif image.mean() < reference.mean() - 20:
        hints.append("it is darker overall: is the dB scale relative to the loudest bin (ref=np.max)?")
    rows = np.flatnonzero(diff.mean(axis=1) > 2 * MEAN_TOLERANCE)
    where = f"; rows {rows.min()}-{rows.max()} differ most" if 0 < rows.size < 0.75 * len(diff) else ""
    hint = f" ({hints[0]})" if hints else ""
    fail(f"{what}: differs from vacnn_tf.features.logmel.logmel_image by {diff.mean():.2f} grey levels on average "
         f"(allowed {MEAN_TOLERANCE}){where}{hint}")


def check_shape(code: StudentCode, fx: Lab1Fixtures) -> None:
    _image(code, fx.waves["1.2 s"])
    _image(code, fx.waves["1.2 s"], image_size=64)


def check_values(code: StudentCode, fx: Lab1Fixtures) -> None:
    wave = fx.waves["1.2 s"]
    _compare(_image(code, wave), fx.reference_image(wave), "128 mel bands")


def check_orientation(code: StudentCode, fx: Lab1Fixtures) -> None:
    """A low tone must light the bottom of the image, a high one the top."""
    t = np.arange(RATE) / RATE
    low = _image(code, (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    high = _image(code, (0.5 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32))
    low_row, high_row = (int(np.argmax(img.mean(axis=1))) for img in (low, high))
    if not low_row > high_row:
        fail(f"the brightest row of a 200 Hz tone is row {low_row}, of a 6 kHz tone row {high_row}: "
             "low frequencies belong at the bottom (high row numbers), high ones at the top")


def check_duration(code: StudentCode, fx: Lab1Fixtures) -> None:
    for name in ("0.5 s", "3.0 s"):
        _compare(_image(code, fx.waves[name]), fx.reference_image(fx.waves[name]), f"a {name} utterance")


def check_settings(code: StudentCode, fx: Lab1Fixtures) -> None:
    wave = fx.waves["1.2 s"]
    for settings in ({"n_mels": 32}, {"fmax": 4000.0}, {"top_db": 60.0}):
        label = ", ".join(f"{k}={v}" for k, v in settings.items())
        _compare(_image(code, wave, **settings), fx.reference_image(wave, **settings), label)


def check_level(code: StudentCode, fx: Lab1Fixtures) -> None:
    wave = fx.waves["1.2 s"]
    loud, quiet = _image(code, wave), _image(code, 0.1 * wave)
    diff = np.abs(loud.astype(np.int16) - quiet).mean()
    if diff > MEAN_TOLERANCE:
        fail(f"the same utterance 20 dB quieter gives an image {diff:.1f} grey levels away: the dB scale "
             "should be relative to each utterance's loudest bin")


def check_silence(code: StudentCode, fx: Lab1Fixtures) -> None:
    if not code.raises(ValueError, code.get("log_mel_image"), np.zeros(RATE, dtype=np.float32), RATE):
        fail("a silent waveform gave an image; it should raise ValueError (there is no loudest bin to refer to)")


def _histogram(code: StudentCode, descriptors: np.ndarray, centres: np.ndarray, normalization: str) -> np.ndarray:
    hist = code.call("bovw_histogram", descriptors, centres, normalization=normalization)
    if not isinstance(hist, np.ndarray):
        fail(f"bovw_histogram returned {type(hist).__name__}, not a numpy array")
    if hist.shape != (len(centres),):
        fail(f"bovw_histogram returned shape {hist.shape}; expected ({len(centres)},), one bin per visual word")
    if hist.dtype != np.float32:
        fail(f"bovw_histogram returned dtype {hist.dtype}; expected float32")
    return hist


def check_histogram_shape(code: StudentCode, fx: Lab1Fixtures) -> None:
    hist = _histogram(code, fx.descriptors, fx.centres, "l1")
    if abs(float(hist.sum()) - 1.0) > 1e-4 or hist.min() < 0:
        fail(f"an l1 histogram should hold frequencies summing to 1; this one sums to {hist.sum():.4f}")


def check_histogram_values(code: StudentCode, fx: Lab1Fixtures) -> None:
    n = len(fx.descriptors)
    counts = _histogram(code, fx.descriptors, fx.centres, "none")
    reference = fx.reference_histogram(fx.descriptors, "none")
    # float32 distances may assign a descriptor lying halfway between two words differently
    if np.abs(counts - reference).sum() > 2:
        fail(f"the counts differ from vacnn_tf.features.bovw.BovwVocabulary.histograms: {counts.astype(int).tolist()} against "
             f"{reference.astype(int).tolist()} ({n} descriptors); is each descriptor counted at its nearest centre?")
    for normalization in ("l1", "l2"):
        hist = _histogram(code, fx.descriptors, fx.centres, normalization)
        if not np.allclose(hist, fx.reference_histogram(fx.descriptors, normalization), atol=2.0 / n + 1e-6):
            fail(f"normalization={normalization!r} differs from the reference (l1: sum 1, l2: unit length)")


def check_histogram_edges(code: StudentCode, fx: Lab1Fixtures) -> None:
    empty = np.zeros((0, fx.centres.shape[1]), dtype=np.float32)
    for normalization in ("l1", "l2", "none"):
        hist = _histogram(code, empty, fx.centres, normalization)
        if np.any(hist != 0) or not np.all(np.isfinite(hist)):
            fail(f"no descriptors with normalization={normalization!r} gave {hist[:4].tolist()}...; expected all zeros")
    if not code.raises(ValueError, code.get("bovw_histogram"), fx.descriptors, fx.centres, normalization="max"):
        fail("normalization='max' was accepted; an unknown normalization should raise ValueError")


CHECKS = [
    Check("log_mel_image returns a square uint8 image of image_size pixels", check_shape),
    Check("log_mel_image matches vacnn_tf.features.logmel.logmel_image (128 mel bands, 1.2 s)", check_values),
    Check("log_mel_image puts low frequencies at the bottom", check_orientation),
    Check("log_mel_image stretches any duration onto the full width (0.5 s and 3 s)", check_duration),
    Check("log_mel_image honours n_mels, fmax and top_db", check_settings),
    Check("log_mel_image gives the same image for a louder or quieter copy", check_level),
    Check("log_mel_image rejects a silent waveform with ValueError", check_silence),
    Check("bovw_histogram returns k frequencies summing to 1", check_histogram_shape),
    Check("bovw_histogram matches vacnn_tf.features.bovw.BovwVocabulary.histograms (none, l1, l2)", check_histogram_values),
    Check("bovw_histogram: no descriptors gives zeros, an unknown normalization a ValueError", check_histogram_edges),
]
