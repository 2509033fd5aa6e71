"""Audio loading, bad-input errors, the log-mel image and the feature cache."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vacnn_tf.config import FeatureConfig, replace
from vacnn_tf.features import logmel
from vacnn_tf.features.logmel import AudioError, cache_path, extract_images, file_sha1, load_audio, logmel_image

RATE = 16000


def tone(freq: float = 220.0, seconds: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = write(tmp_path / "good.wav", tone())
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cut_to_header = tmp_path / "cut.wav"
    cut_to_header.write_bytes(good.read_bytes()[:44])
    nan = tone()
    nan[100] = np.nan
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("hello, I am not audio at all")
    return {
        "empty": tmp_path / "empty.wav",
        "truncated": truncated,
        "cut-to-header": cut_to_header,
        "no-frames": write(tmp_path / "no_frames.wav", np.zeros(0, np.float32)),
        "non-audio": tmp_path / "text.wav",
        "silent": write(tmp_path / "silent.wav", np.zeros(RATE, np.float32)),
        "nan": write(tmp_path / "nan.wav", nan, subtype="FLOAT"),
        "short": write(tmp_path / "short.wav", tone(seconds=0.05)),
        "missing": tmp_path / "missing.wav",
    }


EXPECTED = {
    "empty": "empty file", "truncated": "truncated", "cut-to-header": "truncated",
    "no-frames": "no audio frames",
    "non-audio": "not a readable audio file", "silent": "all silent", "nan": "NaN",
    "short": "too short", "missing": "not found",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_is_named(bad_files, case):
    with pytest.raises(AudioError, match=EXPECTED[case]) as info:
        load_audio(bad_files[case], RATE)
    assert info.value.path == str(bad_files[case]) and str(bad_files[case]) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_load_audio_mixes_and_resamples(tmp_path: Path):
    stereo = np.stack([tone(rate=44100), np.zeros(22050, np.float32)], axis=1)
    wave = load_audio(write(tmp_path / "s.wav", stereo, rate=44100), RATE)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == RATE // 2
    assert 0.1 < np.abs(wave).max() < 0.3  # the silent channel halves the level


def _flac_without_length(wave: np.ndarray, rate: int = RATE) -> bytes:
    """A FLAC whose STREAMINFO says "total samples unknown", as an encoder writing to a pipe leaves it."""
    import io

    out = io.BytesIO()
    sf.write(out, wave, rate, format="FLAC")
    data = bytearray(out.getvalue())
    streaminfo = 8  # after "fLaC" and the block header
    data[streaminfo + 13] &= 0xF0  # the 36-bit sample count is the last 4 bits of byte 13 and bytes 14-17
    data[streaminfo + 14:streaminfo + 18] = bytes(4)
    return bytes(data)


def test_audio_whose_header_declares_no_length_is_read_and_capped(tmp_path: Path):
    wave = tone(seconds=2.5)
    path = tmp_path / "piped.flac"
    path.write_bytes(_flac_without_length(wave))
    assert sf.info(path).frames == 2**63 - 1  # what libsndfile reports: the reader must not trust it
    read = load_audio(path, RATE)
    assert read.shape == wave.shape and np.abs(read - wave).max() < 1e-4
    decoded, duration = logmel.decode_audio(path.read_bytes(), RATE, max_duration=3.0)
    assert duration == pytest.approx(2.5) and np.array_equal(decoded, read)
    with pytest.raises(AudioError, match="too long: more than 2.0 s"):
        logmel.decode_audio(path.read_bytes(), RATE, max_duration=2.0)


def test_logmel_image_shape_range_and_orientation():
    config = FeatureConfig()
    image = logmel_image(tone(150.0), RATE, config)
    assert image.shape == (224, 224) and image.dtype == np.uint8
    assert image.max() >= 245 and image.min() == 0  # the dB range spans the pixel range
    rows = image.mean(axis=1)
    assert rows[-60:].mean() > rows[:60].mean()  # a low tone is at the bottom
    flipped = logmel_image(tone(150.0), RATE, replace(config, low_freq_at_bottom=False))
    np.testing.assert_array_equal(flipped, logmel_image(tone(150.0), RATE, config)[::-1])
    resampled = logmel_image(tone(150.0, rate=22050), 22050, config)
    assert np.abs(resampled.astype(int) - image.astype(int)).mean() < 8
    area = logmel_image(tone(), RATE, replace(config, resize="area", n_mels=64))
    assert area.shape == (224, 224) and area.dtype == np.uint8


def test_logmel_image_rejects_bad_input():
    with pytest.raises(ValueError, match="Received: features.resize='bilinear'"):
        logmel_image(tone(), RATE, replace(FeatureConfig(), resize="bilinear"))
    with pytest.raises(ValueError, match="silent"):
        logmel_image(np.zeros(RATE, np.float32), RATE, FeatureConfig())
    with pytest.raises(ValueError, match="1-D"):
        logmel_image(np.zeros((2, 100), np.float32), RATE, FeatureConfig())


def test_fixed_length_cuts_and_pads_like_a_fixed_length_copy(tmp_path: Path):
    config = FeatureConfig()
    fixed = replace(config, max_seconds=1.0, pad_seconds=1.0)
    long, short = tone(seconds=1.6), tone(seconds=0.6)
    # cut: the image of the first second, whatever followed it
    np.testing.assert_array_equal(logmel_image(long, RATE, fixed), logmel_image(long[:RATE], RATE, config))
    # pad: as if the file itself had been padded with silence to one second
    padded = np.concatenate([short, np.zeros(RATE - short.size, np.float32)])
    np.testing.assert_array_equal(logmel_image(short, RATE, fixed), logmel_image(padded, RATE, config))
    # cut shorter than the padding: the utterance's end is replaced by silence, the time scale kept
    cut = logmel_image(long, RATE, replace(config, max_seconds=0.5, pad_seconds=1.0))
    silenced = np.concatenate([long[: RATE // 2], np.zeros(RATE // 2, np.float32)])
    np.testing.assert_array_equal(cut, logmel_image(silenced, RATE, config))
    assert (cut[:, -60:] == 0).all() and not (logmel_image(long, RATE, fixed)[:, -60:] == 0).all()
    # lengths are counted at the analysis rate, after resampling
    np.testing.assert_array_equal(
        logmel_image(tone(seconds=1.6, rate=22050), 22050, fixed).shape, (224, 224))
    for bad in ({"max_seconds": 0.0}, {"pad_seconds": -1.0}):
        with pytest.raises(ValueError, match=f"features.{next(iter(bad))}"):
            logmel_image(long, RATE, replace(config, **bad))
        # a bad setting stops extraction once, instead of reporting every file as bad audio
        with pytest.raises(ValueError, match=f"features.{next(iter(bad))}"):
            extract_images([write(tmp_path / "ok.wav", long)], replace(config, **bad), None, workers=1)


def test_extract_reports_failures_and_reuses_cache(tmp_path: Path, bad_files, monkeypatch):
    goods = [write(tmp_path / f"g{i}.wav", tone(180.0 + 40 * i)) for i in range(3)]
    paths = [goods[0], bad_files["nan"], goods[1], bad_files["empty"], goods[2], bad_files["missing"]]
    config = FeatureConfig()
    cache = tmp_path / "cache"
    first = extract_images(paths, config, cache, workers=1, progress=False)
    assert first.images.shape == (3, 224, 224) and first.cached == 0
    assert first.ok.tolist() == [True, False, True, False, True, False]
    assert first.paths == [str(p) for p in goods]
    assert [Path(p).name for p, _ in first.failures] == ["nan.wav", "empty.wav", "missing.wav"]
    assert "NaN" in first.failures[0][1] and "empty" in first.failures[1][1]
    assert cache_path(cache, file_sha1(goods[0]), config).is_file()
    assert (cache / "logmel" / config.key() / "config.json").is_file()

    def no_compute(*args, **kwargs):
        raise AssertionError("a cached image was recomputed")

    monkeypatch.setattr(logmel, "file_image", no_compute)
    second = extract_images(paths[::2], config, cache, workers=1, progress=False)
    assert second.cached == 3 and second.failures == []
    np.testing.assert_array_equal(second.images, first.images)


def test_cache_is_keyed_by_content_and_settings(tmp_path: Path):
    a = write(tmp_path / "a.wav", tone())
    b = tmp_path / "copy_of_a.wav"
    b.write_bytes(a.read_bytes())
    config = FeatureConfig()
    extract_images([a], config, tmp_path / "c", workers=1, progress=False)
    assert extract_images([b], config, tmp_path / "c", workers=1, progress=False).cached == 1
    other = replace(config, n_mels=64)
    assert extract_images([b], other, tmp_path / "c", workers=1, progress=False).cached == 0
    write(a, tone(300.0))  # new content under the old name
    assert extract_images([a], config, tmp_path / "c", workers=1, progress=False).cached == 0


_CRASH: dict = {}  # what _crash_on_p1 does in a forked worker: set by the test before the pool starts


def _crash_on_p1(name, *args):
    """``logmel._compute`` that kills its worker on p1.wav (once, or every time)."""
    import os

    if name.endswith("p1.wav") and (_CRASH["always"] or _CRASH["marker"].exists()):
        _CRASH["marker"].unlink(missing_ok=True)
        os._exit(1)
    return _CRASH["compute"](name, *args)


@pytest.mark.parametrize("always", [False, True])
def test_a_crashed_worker_loses_no_file(tmp_path: Path, monkeypatch, always):
    """A worker killed mid-run breaks the pool and fails every queued file with it: those files are
    computed again; only a file that kills its own worker, alone, is reported as failed."""
    import multiprocessing

    monkeypatch.setattr(logmel, "_pool_context", lambda: multiprocessing.get_context("fork"))
    monkeypatch.setitem(_CRASH, "compute", logmel._compute)
    monkeypatch.setitem(_CRASH, "always", always)
    monkeypatch.setitem(_CRASH, "marker", tmp_path / "crash-once")
    (tmp_path / "crash-once").touch()
    monkeypatch.setattr(logmel, "_compute", _crash_on_p1)
    paths = [write(tmp_path / f"p{i}.wav", tone(150.0 + 30 * i)) for i in range(5)]
    extract_images(paths[:1], FeatureConfig(), None, workers=1, progress=False)  # JIT-compiled here, once, not per pool
    batch = extract_images(paths, FeatureConfig(), None, workers=2, progress=False)
    assert batch.ok.tolist() == [True, not always, True, True, True]
    if always:
        assert [(Path(p).name, "worker failed on this file alone" in r) for p, r in batch.failures] == [("p1.wav", True)]
    else:
        assert not (tmp_path / "crash-once").exists()  # the worker did crash once


@pytest.mark.parametrize("start", ["fork", "spawn"])  # spawn is what runs once TensorFlow is loaded
def test_parallel_matches_in_process(tmp_path: Path, bad_files, monkeypatch, start):
    import multiprocessing

    monkeypatch.setattr(logmel, "_pool_context", lambda: multiprocessing.get_context(start))
    paths = [write(tmp_path / f"p{i}.wav", tone(150.0 + 30 * i)) for i in range(4)] + [bad_files["silent"]]
    serial = extract_images(paths, FeatureConfig(), None, workers=1, progress=False)
    parallel = extract_images(paths, FeatureConfig(), None, workers=2, progress=False)
    np.testing.assert_array_equal(serial.images, parallel.images)
    assert parallel.ok.tolist() == [True] * 4 + [False]
    assert "all silent" in parallel.failures[0][1]
    empty = extract_images([], FeatureConfig(), None, progress=False)
    assert empty.images.shape == (0, 224, 224) and empty.failures == []
