"""BOVW (section 3.2): KAZE descriptors, the descriptor cache, fold-only vocabularies, histograms,
vocabulary files, the silhouette study and its command. Synthetic images only; no corpus is read."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from vacnn_tf.config import BovwConfig, replace
from vacnn_tf.features import bovw, kaze
from vacnn_tf.features.bovw import (
    BovwVocabulary,
    VocabularyError,
    descriptors_for,
    extract_descriptors,
    fit_fold_vocabulary,
    kaze_detector,
    silhouette_study,
)

# Small k and fit sample keep K-means to milliseconds; the code paths are those of k = 128.
CONFIG = BovwConfig(k=8, max_fit_descriptors=3000)


def synthetic_logmel(seed: int, size: int = 224) -> np.ndarray:
    """A log-mel-like uint8 image: voiced stretches of a wavering harmonic stack and blurred
    energy blobs on noise (about 80 KAZE keypoints, against ~250 on real EmoDB images)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(40.0, 6.0, (size, size))
    cols = np.arange(size)
    f0 = rng.uniform(8, 20) + rng.uniform(2, 6) * np.sin(cols / rng.uniform(8, 30))
    voiced = np.zeros(size, bool)
    for _ in range(5):
        start = rng.integers(0, size - 20)
        voiced[start:start + rng.integers(10, 40)] = True
    for harmonic in range(1, 9):
        rows = (f0 * harmonic).astype(int)
        keep = (rows < size) & voiced
        image[size - 1 - rows[keep], cols[keep]] += 160.0 / np.sqrt(harmonic)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(30):
        cy, cx, sigma = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 8)
        image += 100.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (3, 3), 0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.stack([synthetic_logmel(seed) for seed in range(10)])


@pytest.fixture(scope="module")
def descriptors(images: np.ndarray) -> list[np.ndarray]:
    return descriptors_for(images, CONFIG, progress=False, workers=1)


# --- KAZE ------------------------------------------------------------------------------------

def test_descriptor_shape_and_dtype(images: np.ndarray, descriptors: list[np.ndarray]):
    assert len(descriptors) == len(images)
    for desc in descriptors:
        assert desc.dtype == np.float32 and desc.ndim == 2 and desc.shape[1] == 64
        assert len(desc) > 0
    extended = extract_descriptors(images[0], replace(CONFIG, kaze_extended=True))
    assert extended.dtype == np.float32 and extended.shape[1] == 128
    # (H, W, 1), as the models take images, is accepted too.
    assert np.array_equal(extract_descriptors(images[0][..., None], CONFIG), descriptors[0])


def test_flat_image_has_no_keypoints_and_a_zero_histogram(descriptors: list[np.ndarray]):
    flat = extract_descriptors(np.full((224, 224), 128, np.uint8), CONFIG)
    assert flat.shape == (0, 64) and flat.dtype == np.float32
    for norm in ("none", "l1", "l2"):
        vocab = BovwVocabulary.fit(descriptors, replace(CONFIG, normalization=norm), seed=0)
        hist = vocab.histograms([flat, descriptors[0]])
        assert hist.shape == (2, 8) and hist.dtype == np.float32
        assert not hist[0].any() and hist[1].any()
    assert np.array_equal(vocab.transform(np.zeros((1, 224, 224), np.uint8)), np.zeros((1, 8), np.float32))


def test_bad_image_is_rejected():
    with pytest.raises(ValueError, match="2-D uint8"):
        extract_descriptors(np.zeros((224, 224), np.float32), CONFIG)


def test_detector_helper_supports_opencv4_and_5(monkeypatch: pytest.MonkeyPatch):
    assert hasattr(kaze_detector(CONFIG), "detectAndCompute")
    calls = []
    monkeypatch.delattr(cv2, "xfeatures2d", raising=False)
    monkeypatch.setattr(cv2, "KAZE_create", lambda *a: calls.append(a) or "kaze4", raising=False)
    assert kaze_detector(CONFIG) == "kaze4"  # OpenCV 4 layout
    assert calls == [(False, False, 0.001, 4, 4)]
    monkeypatch.delattr(cv2, "KAZE_create")
    with pytest.raises(ImportError, match="opencv-contrib"):
        kaze_detector(CONFIG)


def test_threads_give_the_same_descriptors(images: np.ndarray, descriptors: list[np.ndarray]):
    threaded = descriptors_for(images, CONFIG, progress=False, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(threaded, descriptors))


def test_descriptor_cache_hit(tmp_path: Path, images: np.ndarray, descriptors: list[np.ndarray],
                              monkeypatch: pytest.MonkeyPatch):
    first = descriptors_for(images[:4], CONFIG, cache_dir=tmp_path, progress=False, workers=1)
    files = sorted((tmp_path / "kaze").rglob("*.npz"))
    assert len(files) == 4 and (bovw.descriptor_cache_dir(tmp_path, CONFIG) / "config.json").is_file()
    files[0].write_bytes(b"torn")  # a corrupt entry is recomputed, not trusted

    calls = []
    real = kaze.extract_descriptors
    monkeypatch.setattr(kaze, "extract_descriptors", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    second = descriptors_for(images[:4], CONFIG, cache_dir=tmp_path, progress=False, workers=1)
    assert len(calls) == 1  # only the corrupt one
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert all(np.array_equal(a, b) for a, b in zip(second, descriptors[:4]))
    # Different KAZE settings use a different cache folder.
    assert bovw.descriptor_cache_dir(tmp_path, replace(CONFIG, kaze_threshold=0.002)) != bovw.descriptor_cache_dir(tmp_path, CONFIG)


# --- vocabulary and histograms ---------------------------------------------------------------

def test_histogram_normalisation(descriptors: list[np.ndarray]):
    counts = {}
    for norm in ("none", "l1", "l2"):
        hist = BovwVocabulary.fit(descriptors, replace(CONFIG, normalization=norm), seed=0).histograms(descriptors)
        counts[norm] = hist
    assert np.array_equal(counts["none"].sum(axis=1), [len(d) for d in descriptors])
    assert np.allclose(counts["l1"].sum(axis=1), 1.0)
    assert np.allclose(np.linalg.norm(counts["l2"], axis=1), 1.0)
    with pytest.raises(ValueError, match="bovw.normalization"):
        BovwVocabulary.fit(descriptors, replace(CONFIG, normalization="max"), seed=0)


@pytest.mark.parametrize("kmeans", ["full", "minibatch"])
def test_determinism_per_seed(descriptors: list[np.ndarray], kmeans: str):
    total = sum(len(d) for d in descriptors)
    config = replace(CONFIG, kmeans=kmeans, max_fit_descriptors=total // 2)  # exercises the seeded sample too
    a = BovwVocabulary.fit(descriptors, config, seed=3)
    b = BovwVocabulary.fit(descriptors, config, seed=3)
    c = BovwVocabulary.fit(descriptors, config, seed=4)
    assert a.k == 8 and a.centres.shape == (8, 64) and a.centres.dtype == np.float32
    assert a.n_fit_descriptors == total // 2
    assert np.array_equal(a.centres, b.centres)
    assert not np.array_equal(a.centres, c.centres)


def test_fold_isolation(descriptors: list[np.ndarray]):
    train = [0, 2, 3, 5, 7, 8]
    vocab = fit_fold_vocabulary(descriptors, train, CONFIG, seed=1)
    rng = np.random.default_rng(0)
    altered = [d if i in train else rng.random(d.shape, dtype=np.float32) for i, d in enumerate(descriptors)]
    altered += [rng.random((500, 64), dtype=np.float32)]  # an extra test utterance
    for other in (
        fit_fold_vocabulary(altered, train, CONFIG, seed=1),
        fit_fold_vocabulary(descriptors, train[::-1], CONFIG, seed=1),  # order does not matter
        fit_fold_vocabulary(descriptors, np.isin(np.arange(10), train), CONFIG, seed=1),  # bool mask
    ):
        assert np.array_equal(other.centres, vocab.centres)
    # ... and it is really the training part that counts.
    assert not np.array_equal(fit_fold_vocabulary(descriptors, [1, 4, 6, 9], CONFIG, seed=1).centres, vocab.centres)


@pytest.mark.parametrize("indices, message", [
    ([], "non-empty"), ([0, 10], r"\[0, 10\)"), ([-1, 2], r"\[0, 10\)"), ([1, 1, 2], "repeated"),
    ([0.5, 1.0], "integer"), (np.ones(3, bool), "one entry per utterance"),
])
def test_bad_train_indices(descriptors: list[np.ndarray], indices, message):
    with pytest.raises(ValueError, match=message):
        fit_fold_vocabulary(descriptors, indices, CONFIG, seed=0)


def test_descriptor_width_is_checked(descriptors: list[np.ndarray]):
    vocab = BovwVocabulary.fit(descriptors, CONFIG, seed=0)
    with pytest.raises(ValueError, match=r"shape \(n, 64\). Received: shape=\(3, 128\)"):
        vocab.histograms([np.zeros((3, 128), np.float32)])  # extended descriptors, 64-dim vocabulary


def test_too_few_descriptors_to_fit():
    with pytest.raises(ValueError, match="at least bovw.k=8 descriptors"):
        BovwVocabulary.fit([np.zeros((3, 64), np.float32), np.zeros((0, 64), np.float32)], CONFIG, seed=0)


# --- vocabulary files ------------------------------------------------------------------------

def test_save_load_gives_identical_histograms(tmp_path: Path, descriptors: list[np.ndarray]):
    vocab = fit_fold_vocabulary(descriptors, range(6), replace(CONFIG, normalization="l2"), seed=5)
    path = vocab.save(tmp_path / "fold_0" / "vocabulary.npz")
    loaded = BovwVocabulary.load(path, expected=replace(CONFIG, normalization="l2"))
    assert loaded.config == vocab.config and loaded.seed == 5 and loaded.k == 8
    assert loaded.n_fit_descriptors == vocab.n_fit_descriptors
    before, after = vocab.histograms(descriptors), loaded.histograms(descriptors)
    assert before.dtype == after.dtype == np.float32
    assert before.tobytes() == after.tobytes()  # bit for bit


def test_bad_vocabulary_files_are_named(tmp_path: Path, descriptors: list[np.ndarray]):
    vocab = BovwVocabulary.fit(descriptors, CONFIG, seed=0)
    good = vocab.save(tmp_path / "good.npz")

    with pytest.raises(VocabularyError, match="not found: .*missing.npz"):
        BovwVocabulary.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(VocabularyError, match="garbage.npz is corrupt"):
        BovwVocabulary.load(garbage)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(VocabularyError, match="truncated.npz"):
        BovwVocabulary.load(truncated)
    with pytest.raises(VocabularyError, match=r"good.npz does not match.*k: file 8, expected 128"):
        BovwVocabulary.load(good, expected=BovwConfig())

    arrays = dict(np.load(good))
    for name, change, message in [
        ("centres", np.zeros((5, 64), np.float32), "expected finite float32"),
        ("centres", np.full((8, 64), np.nan, np.float32), "expected finite float32"),
        ("format", np.asarray(99), "format 99"),
        ("normalization", np.asarray("max"), "invalid settings"),
        ("k", np.asarray("eight"), "invalid settings"),
    ]:
        bad = tmp_path / f"bad_{name}.npz"
        np.savez(bad, **{**arrays, name: change})
        with pytest.raises(VocabularyError, match=f"bad_{name}.npz.*{message}"):
            BovwVocabulary.load(bad)
    lacking = tmp_path / "lacking.npz"
    np.savez(lacking, **{n: a for n, a in arrays.items() if n != "kaze_threshold"})
    with pytest.raises(VocabularyError, match=r"lacking.npz lacks \['kaze_threshold'\]"):
        BovwVocabulary.load(lacking)


# --- silhouette study ------------------------------------------------------------------------

def test_silhouette_study(descriptors: list[np.ndarray]):
    total = sum(len(d) for d in descriptors)
    table = silhouette_study(descriptors, [2, 4, 8], sample_size=400, seed=0, config=CONFIG)
    assert list(table.columns) == ["k", "silhouette", "n_descriptors", "n_fit_descriptors", "seconds"]
    assert list(table["k"]) == [2, 4, 8]
    assert table["silhouette"].between(-1, 1).all()
    assert (table["n_descriptors"] == 400).all() and (table["n_fit_descriptors"] == total).all()
    again = silhouette_study(descriptors, [2, 4, 8], sample_size=400, seed=0, config=CONFIG)
    assert np.array_equal(table["silhouette"], again["silhouette"])
    with pytest.raises(ValueError, match="k=1"):
        silhouette_study(descriptors, [1], sample_size=400, seed=0, config=CONFIG)


def test_silhouette_command_on_synthetic_corpus(tmp_path: Path, capsys: pytest.CaptureFixture):
    from vacnn_tf.cli import main
    from vacnn_tf.corpora.synth import generate

    root = generate(tmp_path / "corpus", per_class=2, seed=0, corpora=("emodb",))["emodb"]
    out = tmp_path / "study"
    code = main([
        "bovw-silhouette", "--corpus", "emodb", "--root", str(root), "--k", "2,4",
        "--cache", str(tmp_path / "cache"), "--out", str(out), "--sample", "300", "--seed", "1",
        "--workers", "1", "--set", "bovw.max_fit_descriptors=2000",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "silhouette" in printed and (out / "silhouette.png").stat().st_size > 0
    import pandas as pd

    table = pd.read_csv(out / "silhouette.csv")
    assert list(table["k"]) == [2, 4] and set(table["corpus"]) == {"emodb"}
    # Descriptors were cached where training looks for them (cache/bovw).
    assert list((tmp_path / "cache" / "bovw" / "kaze").rglob("*.npz"))


def test_silhouette_command_rejects_bad_k():
    from vacnn_tf.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bovw-silhouette", "--corpus", "emodb", "--root", "x", "--k", "16,abc"])
