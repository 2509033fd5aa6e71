"""Log-mel images (sections 3.1, 4.2): any audio file -> one 224x224 uint8 grayscale image.

The paper fixes the FFT window (2048) and hop (512), a log amplitude and a 224x224x1 image with
pixel values 0-255. The rest is ours and lives in :class:`vacnn_tf.config.FeatureConfig`:
one analysis rate for every corpus, 128 mel bands, dB relative to the loudest bin clipped at
``top_db`` and mapped linearly onto 0-255, the whole utterance resized onto 224 columns, low
frequencies at the bottom.

Images are cached on disk, one npz per file, keyed by the file's content (sha1) and the
feature settings (``FeatureConfig.key()``), so renaming or moving a corpus costs nothing and
changing a setting never serves a stale image.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Sequence

import numpy as np

from vacnn_tf.config import FeatureConfig, to_dict
from vacnn_tf.storage import load_npz, save_npz, write_json

# A file whose loudest sample is below this (-80 dBFS, under 4 LSB of 16-bit audio) holds no signal.
SILENCE_PEAK = 1e-4
# libsndfile's frame count for a stream whose header declares no length (SF_COUNT_MAX)
_UNDECLARED_FRAMES = 2**63 - 1


class AudioError(ValueError):
    """An audio file that cannot become a feature image.

    Attributes:
        path: The file.
        reason: Why, in words (e.g. "empty file (0 bytes)").
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps (path, reason) intact across process boundaries
        return (type(self), (self.path, self.reason))


def _wav_truncation(fh: BinaryIO, size: int) -> Optional[str]:
    """For RIFF/WAVE data: the reason if the data chunk promises more bytes than there are.

    libsndfile quietly reads what is there, so a cut-off download would otherwise pass as a
    shorter utterance.
    """
    fh.seek(0)
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= size:
        fh.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
        if chunk_id == b"data":
            available = size - offset - 8
            # 0 and 0xFFFFFFFF are "length unknown" markers written by streaming recorders.
            if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                return (
                    f"truncated: the WAV header declares {chunk_size} bytes of audio "
                    f"but the file holds {available}"
                )
            return None
        offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return None


def load_audio(path: str | Path, sample_rate: int, min_duration: float = 0.1) -> np.ndarray:
    """Read an audio file as float32 mono at ``sample_rate``.

    Channels are averaged; other rates are resampled with soxr (librosa.resample, ``soxr_hq``).

    Args:
        path: Any file libsndfile reads (wav, flac, ogg, ...).
        sample_rate: The analysis rate (``FeatureConfig.sample_rate``).
        min_duration: Shorter files are rejected (seconds, default 0.1).

    Returns:
        float32 waveform, shape ``(samples,)``.

    Raises:
        AudioError: missing, empty, truncated, unreadable, NaN-containing, all-silent or too
            short files, naming the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    with open(path, "rb") as fh:
        return _read_audio(fh, path, path.stat().st_size, sample_rate, min_duration)[0]


def decode_audio(data: bytes, sample_rate: int, min_duration: float = 0.1, max_duration: Optional[float] = None,
                 name: str = "audio") -> tuple[np.ndarray, float]:
    """:func:`load_audio` for a file's bytes (an upload), with an optional longest duration.

    The duration is read from the header first, so an over-long body is refused before it is
    decoded.

    Args:
        data: The bytes of a wav, flac, ogg, ... file.
        sample_rate: The analysis rate.
        min_duration: Shorter audio is rejected (seconds).
        max_duration: Longer audio is rejected (seconds); None accepts any length.
        name: What error messages call the data (e.g. "request body").

    Returns:
        The float32 mono waveform at ``sample_rate`` and the audio's duration in seconds.

    Raises:
        AudioError: as :func:`load_audio`, and for audio longer than ``max_duration``.
    """
    return _read_audio(io.BytesIO(data), name, len(data), sample_rate, min_duration, max_duration)


def _read_audio(fh: BinaryIO, name: str | Path, size: int, sample_rate: int, min_duration: float,
                max_duration: Optional[float] = None) -> tuple[np.ndarray, float]:
    import soundfile as sf

    if size == 0:
        raise AudioError(name, "empty file (0 bytes)")
    truncated = _wav_truncation(fh, size)
    if truncated:
        raise AudioError(name, truncated)
    fh.seek(0)
    try:
        with sf.SoundFile(fh) as audio:
            rate = audio.samplerate
            declared = audio.frames < _UNDECLARED_FRAMES
            if max_duration is not None and rate > 0 and declared and audio.frames / rate > max_duration:
                raise AudioError(name, f"too long: {audio.frames / rate:.3f} s > {max_duration} s")
            if declared:
                data = audio.read(dtype="float32", always_2d=True)
        if not declared:
            fh.seek(0)
            data = _read_undeclared_length(fh, name, rate, max_duration)
    except AudioError:
        raise
    except Exception as err:  # libsndfile's errors differ by format and version
        raise AudioError(name, f"not a readable audio file ({err})") from None
    if data.shape[0] == 0:
        raise AudioError(name, "no audio frames (header only)")
    if not np.isfinite(data).all():
        raise AudioError(name, f"contains {int((~np.isfinite(data)).sum())} NaN or infinite samples")
    duration = data.shape[0] / rate
    if duration < min_duration:
        raise AudioError(name, f"too short: {duration:.3f} s < {min_duration} s")
    mono = data.mean(axis=1)
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
        raise AudioError(name, f"all silent (peak {level} dBFS)")
    if rate != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32), duration


def _read_undeclared_length(fh: BinaryIO, name: str | Path, rate: int, max_duration: Optional[float]) -> np.ndarray:
    """Reads audio whose header declares no length (a FLAC encoded to a pipe) a second at a time.

    soundfile seeks after every read to keep its position, which libsndfile cannot do in such a
    stream, so the reader declares itself unseekable; the duration limit is enforced as it reads.
    """
    import soundfile as sf

    class _Unseekable(sf.SoundFile):
        def seekable(self) -> bool:
            return False

    chunk = max(rate, 1024)
    limit = None if max_duration is None else max_duration * rate
    parts: list[np.ndarray] = []
    frames = 0
    with _Unseekable(fh) as audio:
        while True:
            part = audio.read(chunk, dtype="float32", always_2d=True)
            parts.append(part)
            frames += part.shape[0]
            if limit is not None and frames > limit:
                raise AudioError(name, f"too long: more than {max_duration} s (its header declares no length)")
            if part.shape[0] < chunk:
                return np.concatenate(parts)


def _interpolation(name: str) -> int:
    import cv2

    # names checked by FeatureConfig (config.RESIZE_MODES)
    return {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC,
            "nearest": cv2.INTER_NEAREST}[name]


def fit_duration(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Cut to ``max_seconds`` and zero-pad to ``pad_seconds`` (both at ``config.sample_rate``).

    Real corpora vary in length (EmoDB 1.2-9 s) while copies in circulation are often cut or
    padded to a fixed length; these two settings make either condition reproducible, and cutting
    shorter than ``pad_seconds`` measures what the lost end of each utterance was worth.
    """
    import librosa

    y = waveform
    if config.max_seconds is not None:
        y = y[: int(round(config.max_seconds * config.sample_rate))]
    if config.pad_seconds is not None:
        padded = int(round(config.pad_seconds * config.sample_rate))
        if y.shape[0] < padded:
            y = librosa.util.fix_length(y, size=padded)
    return y


def logmel_image(waveform: np.ndarray, sample_rate: int, config: FeatureConfig) -> np.ndarray:
    """The paper's log-mel image of one utterance (sections 3.1, 4.2).

    Steps: resample to ``config.sample_rate`` if needed; optional silence trim (``trim_db``);
    optional cut and zero-padding (``max_seconds``, ``pad_seconds``); mel power spectrogram
    (``n_fft``, ``hop_length``, ``n_mels``, ``fmin``, ``fmax``); dB relative to the loudest bin,
    clipped at ``-top_db``; linear map of ``[-top_db, 0]`` onto ``[0, 255]``; flipped so low
    frequencies are at the bottom (``low_freq_at_bottom``); resized with OpenCV (``resize``) to
    ``(image_size, image_size)``: every utterance fills the width whatever its duration.

    Args:
        waveform: Mono samples, shape ``(samples,)``.
        sample_rate: Rate of ``waveform`` in Hz.
        config: Feature settings.

    Returns:
        uint8 image, shape ``(image_size, image_size)`` (224x224 by default).

    Raises:
        ValueError: empty, non-finite or silent waveform, or an unknown ``resize`` mode.
    """
    import cv2
    import librosa

    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"waveform must be a non-empty 1-D array. Received: shape={y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("waveform contains NaN or infinite samples")
    if sample_rate != config.sample_rate:
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=config.sample_rate, res_type="soxr_hq")
    if config.trim_db is not None:
        y, _ = librosa.effects.trim(y, top_db=config.trim_db, frame_length=config.n_fft,
                                    hop_length=config.hop_length)
    y = fit_duration(y, config)
    mel = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, power=2.0,
    )
    if not mel.max() > 0:
        raise ValueError("waveform is silent: its mel spectrogram is all zeros")
    db = librosa.power_to_db(mel, ref=np.max, top_db=config.top_db)  # in [-top_db, 0]
    pixels = (db + config.top_db) * (255.0 / config.top_db)
    if config.low_freq_at_bottom:
        pixels = pixels[::-1]  # mel bin 0 (lowest band) becomes the bottom row
    size = config.image_size
    resized = cv2.resize(np.ascontiguousarray(pixels, dtype=np.float32), (size, size),
                         interpolation=_interpolation(config.resize))
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def file_image(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Load one file and render its image (bad audio raises :class:`AudioError`)."""
    wave = load_audio(path, config.sample_rate, min_duration=config.min_duration)
    try:
        return logmel_image(wave, config.sample_rate, config)
    except ValueError as err:  # e.g. silent after trimming: still the file's fault
        raise AudioError(path, str(err)) from None


@dataclass
class ImageBatch:
    """Images of a list of files, failures set aside.

    Attributes:
        images: uint8, shape ``(n_ok, 224, 224)``, in input order.
        paths: The files behind ``images``, in input order.
        ok: bool mask over the input list.
        failures: ``(path, reason)`` for each file that could not be read.
        cached: How many images came from the cache.
    """

    images: np.ndarray
    paths: list[str]
    ok: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0


def file_sha1(path: str | Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(cache_dir: str | Path, sha1: str, config: FeatureConfig) -> Path:
    """Where the image of a file with content hash ``sha1`` is cached for these settings."""
    return Path(cache_dir) / "logmel" / config.key() / sha1[:2] / f"{sha1}.npz"


def _compute(path: str, config: FeatureConfig, target: Optional[str]) -> tuple[Optional[np.ndarray], str]:
    """Worker: (image, "") or (None, reason). Never raises, so one bad file cannot stop a batch."""
    try:
        image = file_image(path, config)
    except AudioError as err:
        return None, err.reason
    except Exception as err:  # an unexpected library error is still reported per file
        return None, f"unexpected {type(err).__name__}: {err}"
    if target is not None:
        save_npz(target, image=image)
    return image, ""


def _load_cached(target: Path, size: int) -> Optional[np.ndarray]:
    try:
        image = load_npz(target)["image"]
    except Exception:  # unreadable cache entry: recompute rather than fail
        return None
    return image if image.shape == (size, size) and image.dtype == np.uint8 else None


def _pool_context():
    """Fork while no deep-learning runtime is loaded (fast start, no ``__main__`` guard needed in
    user scripts); spawn once one is, because forking its live thread pools can deadlock."""
    import multiprocessing
    import sys

    loaded = any(name in sys.modules for name in ("tensorflow", "torch", "jax"))
    if not loaded and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def extract_images(
    paths: Sequence[str | Path],
    config: FeatureConfig,
    cache_dir: str | Path | None,
    workers: int = 0,
    progress: bool = True,
) -> ImageBatch:
    """Log-mel images of many files, from the cache where possible, in parallel otherwise.

    Args:
        paths: Audio files.
        config: Feature settings.
        cache_dir: Cache folder (``None``: no caching). Entries are written atomically.
        workers: Processes for the files not cached yet; 0 = ``os.cpu_count()``, 1 = in this
            process. Workers are forked, or spawned once TensorFlow is loaded (then scripts need
            the usual ``if __name__ == "__main__":`` guard).
        progress: Show a tqdm progress bar.

    Returns:
        An :class:`ImageBatch`; files that fail are listed in ``failures`` and the rest goes on.
    """
    from tqdm.auto import tqdm

    names = [str(p) for p in paths]
    size = config.image_size
    bar = tqdm(total=len(names), desc="log-mel images", unit="file", disable=not progress)
    images, reasons, todo = _from_cache(names, config, cache_dir, bar)
    cached = len(names) - len(todo) - len(reasons)
    for index, image, reason in _compute_all(names, todo, config, workers):
        images[index] = image
        if reason:
            reasons[index] = reason
        bar.update()
    bar.close()
    ok = np.array([img is not None for img in images], dtype=bool)
    stack = [img for img in images if img is not None]
    return ImageBatch(
        images=np.stack(stack) if stack else np.zeros((0, size, size), np.uint8),
        paths=[n for n, good in zip(names, ok) if good],
        ok=ok,
        failures=[(names[i], reasons[i]) for i in sorted(reasons)],
        cached=cached,
    )


def _from_cache(
    names: list[str], config: FeatureConfig, cache_dir: str | Path | None, bar: Any
) -> tuple[list[Optional[np.ndarray]], dict[int, str], list[tuple[int, Optional[str]]]]:
    """Per file, its cached image (or None); the files that cannot be read, with the reason;
    and ``(index, cache entry to write or None)`` of each file still to compute."""
    size = config.image_size
    images: list[Optional[np.ndarray]] = [None] * len(names)
    reasons: dict[int, str] = {}
    todo: list[tuple[int, Optional[str]]] = []
    if cache_dir is not None:
        meta = Path(cache_dir) / "logmel" / config.key() / "config.json"
        if not meta.is_file():  # tells a human which settings a cache folder holds
            write_json(meta, to_dict(config))
    for index, name in enumerate(names):
        target = None
        if cache_dir is not None:
            try:
                target = cache_path(cache_dir, file_sha1(name), config)
            except FileNotFoundError:
                reasons[index] = "file not found"
                bar.update()
                continue
            except OSError as err:
                reasons[index] = f"cannot read file ({err.strerror or err})"
                bar.update()
                continue
            if target.is_file():
                images[index] = _load_cached(target, size)
        if images[index] is None:
            todo.append((index, None if target is None else str(target)))
        else:
            bar.update()
    return images, reasons, todo


def _compute_all(
    names: list[str], todo: list[tuple[int, Optional[str]]], config: FeatureConfig, workers: int
) -> Iterator[tuple[int, Optional[np.ndarray], str]]:
    """``(index, image or None, reason)`` for each file of ``todo``, as each finishes: in this
    process, or in a pool of ``workers`` processes (0: one per core) when more than one is worth it."""
    n_workers = min((os.cpu_count() or 1) if workers <= 0 else workers, len(todo))
    if n_workers <= 1:
        for index, target in todo:
            yield (index, *_compute(names[index], config, target))
        return
    context = _pool_context()
    pending, alone = list(todo), False
    while pending:
        # a worker killed (out of memory, a crash inside a decoder) breaks the whole pool and fails
        # every file still queued: those files are not bad, so they go to a fresh pool, round after
        # round while each round finishes some; after a round that finishes none, each file gets a
        # pool of its own, and only a file that takes its own worker down is reported
        crashed: list[tuple[tuple[int, Optional[str]], BaseException]] = []
        for group in ([item] for item in pending) if alone else [pending]:
            with ProcessPoolExecutor(max_workers=min(n_workers, len(group)), mp_context=context) as pool:
                futures = {pool.submit(_compute, names[i], config, t): (i, t) for i, t in group}
                for future in as_completed(futures):
                    try:
                        image, reason = future.result()
                    except Exception as err:  # BrokenProcessPool, ...
                        crashed.append((futures[future], err))
                        continue
                    yield futures[future][0], image, reason
        if alone:
            for (index, _), err in crashed:
                yield index, None, f"worker failed on this file alone: {type(err).__name__}: {err}"
            return
        alone = len(crashed) == len(pending)
        pending = [item for item, _ in crashed]
