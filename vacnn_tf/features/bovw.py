"""Bag of visual words over KAZE descriptors of the log-mel image (paper section 3.2).

Three steps, as the paper describes them: KAZE local descriptors on each 224x224 log-mel
image; K-means over the descriptors of the *training* utterances, whose centres are the
visual words; and a ``k``-bin histogram of nearest visual words per utterance (k = 128).
The silhouette value of eq. 3 is used to study the number of clusters
(:func:`silhouette_study`, ``vacnn bovw-silhouette``).

Leakage rule: :func:`fit_fold_vocabulary` is the only way the training code builds a
vocabulary. It takes a fold's training indices and never looks at the other descriptors,
so validation and test utterances cannot reach K-means.

K-means choice (``bovw.kmeans``, default ``minibatch``). Measured on the real EmoDB (535
log-mel images, 132,270 KAZE descriptors; K-means on a 100,000-descriptor sample, k = 128,
2 cores; seeds 0-2):

=============================  ===========  =====================  =================  ===================
estimator                      fit time     inertia / descriptor   silhouette (10k)   BOVW-only accuracy
=============================  ===========  =====================  =================  ===================
MiniBatchKMeans (batch 4096)   0.7-1.0 s    0.1441-0.1445          0.043-0.046        0.447
KMeans (Lloyd, n_init=1)       4.1-5.0 s    0.1414-0.1415          0.049-0.052        0.413
=============================  ===========  =====================  =================  ===================

(Fit times on an idle machine; with the 2 cores shared by a training job they were 0.9 s
against 20-33 s. Accuracy: logistic regression on the histograms alone, stratified 5-fold
CV with a vocabulary per fold, a proxy for what the network gets; three random 80/20
splits gave 0.467 against 0.430.) Full K-means reaches a 2 % lower inertia and a slightly
higher silhouette, but the histograms it yields classify no better (here a little worse),
and it is 5-20x slower; letting MiniBatchKMeans run 100 epochs without early stopping only
reached 0.1430 in 12-36 s. So the mini-batch estimator is the default, "as good and
faster" where it matters; ``bovw.kmeans=full`` gives the exact Lloyd K-means for a literal
reading of the paper. Numbers from ``benchmarks/bovw_throughput.py --compare-kmeans``.

KAZE extraction and the descriptor cache live in :mod:`vacnn_tf.features.kaze` and are re-exported
here (``extract_descriptors``, ``descriptors_for``, ...), so ``vacnn_tf.features.bovw`` is the one
import the training code needs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import numpy as np

from vacnn_tf.config import BOVW_NORMALIZATIONS, KMEANS_MODES, BovwConfig
from vacnn_tf.features.kaze import (  # re-exported: the contract names them vacnn_tf.features.bovw.*
    KAZE_FIELDS,
    descriptor_cache_dir,
    descriptor_dim,
    descriptors_for,
    extract_descriptors,
    image_digest,
    kaze_detector,
    kaze_settings_key,
)
from vacnn_tf.storage import load_npz, save_npz

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BovwVocabulary", "VocabularyError", "check_config", "descriptor_cache_dir", "descriptor_dim",
    "descriptors_for", "extract_descriptors", "fit_fold_vocabulary", "image_digest", "kaze_detector",
    "kaze_settings_key", "silhouette_study",
]

#: Version of the vocabulary file layout written by :meth:`BovwVocabulary.save`.
VOCABULARY_FORMAT = 1
#: Settings that change which histogram an image gets; a loaded vocabulary must match them.
HISTOGRAM_FIELDS = ("k", *KAZE_FIELDS, "normalization")
# Rows of descriptors per nearest-centre block: bounds the (rows, k) distance matrix to ~64 MiB.
_ASSIGN_CHUNK = 65536


class VocabularyError(ValueError):
    """A vocabulary file that is corrupt or does not match the expected settings."""


def check_config(config: BovwConfig) -> None:
    """Reject BOVW settings this module cannot honour, naming the config key.

    Raises:
        ValueError: an unknown ``bovw.normalization`` or ``bovw.kmeans``, or ``bovw.k`` < 2.
    """
    if config.normalization not in BOVW_NORMALIZATIONS:
        raise ValueError(
            f"bovw.normalization must be one of {list(BOVW_NORMALIZATIONS)}. "
            f"Received: normalization={config.normalization!r}"
        )
    if config.kmeans not in KMEANS_MODES:
        raise ValueError(f"bovw.kmeans must be one of {list(KMEANS_MODES)}. Received: kmeans={config.kmeans!r}")
    if config.k < 2:
        raise ValueError(f"bovw.k must be at least 2. Received: k={config.k}")


def _as_descriptors(desc: np.ndarray, dim: int) -> np.ndarray:
    """One utterance's descriptors as float32 (n, dim); refuses a width that is not ``dim``
    (a reshape would silently turn 128-value descriptors into pairs of 64)."""
    desc = np.asarray(desc, dtype=np.float32)
    if desc.size == 0:
        return np.zeros((0, dim), np.float32)
    if desc.ndim != 2 or desc.shape[1] != dim:
        raise ValueError(f"Descriptors must have shape (n, {dim}). Received: shape={desc.shape}")
    return desc


def _stack(descriptors: Iterable[np.ndarray], dim: int) -> np.ndarray:
    arrays = [_as_descriptors(d, dim) for d in descriptors]
    return np.concatenate(arrays) if arrays else np.zeros((0, dim), np.float32)


def _sample_rows(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` rows, chosen without replacement by a seeded RNG, in their original order."""
    if len(rows) <= limit:
        return rows
    rng = np.random.default_rng(seed)
    return rows[np.sort(rng.choice(len(rows), size=limit, replace=False))]


def _kmeans(config: BovwConfig, k: int, seed: int) -> Any:
    """The configured scikit-learn estimator, seeded."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if config.kmeans == "full":
        return KMeans(n_clusters=k, n_init=1, random_state=seed)
    # n_init=3 runs three k-means++ initialisations on init_size points and keeps the best;
    # cheap, and it steadies the result across seeds.
    return MiniBatchKMeans(
        n_clusters=k, batch_size=config.kmeans_batch_size, n_init=3, random_state=seed
    )


def _nearest(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for every row, computed in float64."""
    centres64 = centres.astype(np.float64)
    c_sq = np.einsum("ij,ij->i", centres64, centres64)
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), _ASSIGN_CHUNK):
        block = rows[start:start + _ASSIGN_CHUNK].astype(np.float64)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is constant per row, so it is left out.
        out[start:start + len(block)] = np.argmin(c_sq[None, :] - 2.0 * block @ centres64.T, axis=1)
    return out


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarray fields with == is ambiguous
class BovwVocabulary:
    """K-means visual words and the settings needed to turn images into histograms.

    Attributes:
        centres: float32 (k, 64) cluster centres, the visual words.
        config: the BOVW settings it was fitted with (KAZE parameters, normalisation).
        seed: the seed that drove sampling and K-means.
        n_fit_descriptors: how many descriptors K-means saw.
    """

    centres: np.ndarray
    config: BovwConfig
    seed: int
    n_fit_descriptors: int

    @property
    def k(self) -> int:
        """Number of visual words."""
        return int(self.centres.shape[0])

    @classmethod
    def fit(cls, descriptors: Sequence[np.ndarray], config: BovwConfig, seed: int) -> "BovwVocabulary":
        """Fit ``config.k`` visual words on the given descriptors (all of them are training data).

        Training code should call :func:`fit_fold_vocabulary`, which picks the training
        utterances of a fold; this method trusts its input.

        Args:
            descriptors: one float32 (n_i, 64) array per utterance.
            config: BOVW settings; ``k``, ``kmeans``, ``kmeans_batch_size`` and
                ``max_fit_descriptors`` are used here.
            seed: drives the descriptor sample and K-means initialisation.

        Returns:
            The fitted vocabulary.

        Raises:
            ValueError: fewer descriptors than visual words.
        """
        check_config(config)
        rows = _stack(descriptors, descriptor_dim(config))
        if min(len(rows), config.max_fit_descriptors) < config.k:
            raise ValueError(
                f"K-means needs at least bovw.k={config.k} descriptors; the {len(descriptors)} "
                f"training utterance(s) gave {len(rows)} (bovw.max_fit_descriptors={config.max_fit_descriptors})."
            )
        sample = _sample_rows(rows, config.max_fit_descriptors, seed)
        model = _kmeans(config, config.k, seed).fit(sample)
        centres = np.ascontiguousarray(model.cluster_centers_, dtype=np.float32)
        return cls(centres=centres, config=config, seed=int(seed), n_fit_descriptors=len(sample))

    def histograms(self, descriptors: Sequence[np.ndarray]) -> np.ndarray:
        """Visual-word histograms, one row per utterance.

        Args:
            descriptors: one (n_i, 64) array per utterance; n_i may be 0.

        Returns:
            float32 (N, k): counts normalised per ``config.normalization`` (none: counts; l1:
            frequencies summing to 1; l2: unit length). An utterance with no descriptors
            gets an all-zero row.
        """
        dim = self.centres.shape[1]
        arrays = [_as_descriptors(d, dim) for d in descriptors]
        counts = np.zeros((len(arrays), self.k), dtype=np.float64)
        if arrays:
            owner = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
            words = _nearest(_stack(arrays, dim), self.centres)
            flat = np.bincount(owner * self.k + words, minlength=len(arrays) * self.k)
            counts = flat.reshape(len(arrays), self.k).astype(np.float64)
        if self.config.normalization == "l1":
            norm = counts.sum(axis=1, keepdims=True)
        elif self.config.normalization == "l2":
            norm = np.sqrt((counts**2).sum(axis=1, keepdims=True))
        else:
            norm = np.ones((len(arrays), 1))
        # Empty utterances have norm 0; dividing by 1 keeps their row at zero.
        return (counts / np.where(norm > 0, norm, 1.0)).astype(np.float32)

    def transform(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        cache_dir: str | Path | None = None,
        progress: bool = False,
        workers: int = 0,
    ) -> np.ndarray:
        """Histograms for log-mel images, with this vocabulary's own KAZE settings.

        Args:
            images: uint8 (N, 224, 224).
            cache_dir, progress, workers: as for :func:`descriptors_for`.

        Returns:
            float32 (N, k).
        """
        return self.histograms(descriptors_for(images, self.config, cache_dir, progress, workers))

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary to an npz file atomically (plain arrays only, loaded back with allow_pickle=False).

        Stored: ``centres``, ``format``, ``seed``, ``n_fit_descriptors`` and every BovwConfig
        field under its own name (``k``, ``kaze_*``, ``normalization``, ...).
        """
        fields = {f.name: np.asarray(getattr(self.config, f.name)) for f in dataclasses.fields(BovwConfig)}
        return save_npz(
            path,
            centres=self.centres,
            format=np.asarray(VOCABULARY_FORMAT),
            seed=np.asarray(self.seed),
            n_fit_descriptors=np.asarray(self.n_fit_descriptors),
            **fields,
        )

    @classmethod
    def load(cls, path: str | Path, expected: Optional[BovwConfig] = None) -> "BovwVocabulary":
        """Read a vocabulary written by :meth:`save`, checking it.

        Args:
            path: the npz file.
            expected: if given, the settings the caller will use; the file must agree on
                every field in ``HISTOGRAM_FIELDS`` (k, KAZE parameters, normalisation).

        Raises:
            VocabularyError: the file is missing, corrupt, of another format, inconsistent,
                or disagrees with ``expected``; the message names the file.
        """
        path = Path(path)
        data = _read_vocabulary_file(path)
        config = _stored_config(data, path)
        _check_centres(data["centres"], config, path)
        if expected is not None:
            _check_matches(config, expected, path)
        try:
            seed, n_fit = int(data["seed"]), int(data["n_fit_descriptors"])
        except (TypeError, ValueError) as err:
            raise VocabularyError(f"Vocabulary file {path} holds an invalid seed or n_fit_descriptors: {err}") from err
        return cls(centres=data["centres"], config=config, seed=seed, n_fit_descriptors=n_fit)


def _read_vocabulary_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a vocabulary file, checked to hold every array :meth:`BovwVocabulary.save` writes in this format."""
    try:
        data = load_npz(path)
    except FileNotFoundError:
        raise VocabularyError(f"Vocabulary file not found: {path}") from None
    except Exception as err:  # zipfile.BadZipFile, EOFError, ValueError (object arrays)...
        raise VocabularyError(f"Vocabulary file {path} is corrupt or not an npz file: {err}") from err
    # Fields that shape the histogram must be present; others (K-means knobs) fall back to
    # their defaults so a file survives a later, unrelated BovwConfig addition.
    required = ["centres", "format", "seed", "n_fit_descriptors", *HISTOGRAM_FIELDS]
    missing = [name for name in required if name not in data]
    if missing:
        raise VocabularyError(f"Vocabulary file {path} lacks {missing}; was it written by BovwVocabulary.save?")
    if data["format"].shape != () or data["format"].item() != VOCABULARY_FORMAT:
        raise VocabularyError(
            f"Vocabulary file {path} has format {data['format'].tolist()!r}; this code reads format {VOCABULARY_FORMAT}."
        )
    return data


def _stored_config(data: dict[str, np.ndarray], path: Path) -> BovwConfig:
    """The BovwConfig a vocabulary file was fitted with, each field of its default's type and checked."""
    try:
        values = {}
        for f in dataclasses.fields(BovwConfig):
            if f.name not in data:
                continue
            value = data[f.name].item()
            kind = type(f.default)  # every BovwConfig default is a plain int/float/bool/str
            if f.default is None:
                kind = type(value)
            if kind is float and type(value) is int:
                value = float(value)
            if type(value) is not kind:
                raise TypeError(f"{f.name} should be {kind.__name__}, found {value!r}")
            values[f.name] = value
        config = BovwConfig(**values)
        check_config(config)
    except (TypeError, ValueError) as err:
        raise VocabularyError(f"Vocabulary file {path} holds invalid settings: {err}") from err
    return config


def _check_centres(centres: np.ndarray, config: BovwConfig, path: Path) -> None:
    """The centres are ``k`` finite float32 rows of one descriptor's length."""
    want = (config.k, descriptor_dim(config))
    if centres.dtype != np.float32 or centres.shape != want or not np.isfinite(centres).all():
        raise VocabularyError(
            f"Vocabulary file {path} has centres {centres.dtype}{centres.shape}; expected finite float32{want}."
        )


def _check_matches(config: BovwConfig, expected: BovwConfig, path: Path) -> None:
    """A loaded vocabulary's settings agree with the caller's on every field that changes a histogram."""
    diff = [
        f"{name}: file {getattr(config, name)!r}, expected {getattr(expected, name)!r}"
        for name in HISTOGRAM_FIELDS
        if getattr(config, name) != getattr(expected, name)
    ]
    if diff:
        raise VocabularyError(f"Vocabulary file {path} does not match the settings in use: " + "; ".join(diff))


def fit_fold_vocabulary(
    descriptors: Sequence[np.ndarray],
    train_indices: Sequence[int] | np.ndarray,
    config: BovwConfig,
    seed: int,
) -> BovwVocabulary:
    """Fit a fold's vocabulary on its training utterances only (paper section 3.2, no leakage).

    The only way training code builds a vocabulary: descriptors outside ``train_indices``
    (validation and test utterances) are never read, so changing them cannot change the
    vocabulary. The indices are sorted first, so their order does not matter either.

    Args:
        descriptors: one (n_i, 64) array per utterance of the whole corpus table.
        train_indices: integer positions of the fold's training utterances in ``descriptors``
            (a boolean mask of the same length is accepted too).
        config: BOVW settings.
        seed: drives the descriptor sample and K-means.

    Returns:
        The fitted vocabulary.

    Raises:
        ValueError: empty, repeated or out-of-range indices.
    """
    idx = np.asarray(train_indices)
    if idx.dtype == bool:
        if idx.shape != (len(descriptors),):
            raise ValueError(
                f"A boolean train mask must have one entry per utterance ({len(descriptors)}). Received: shape={idx.shape}"
            )
        idx = np.flatnonzero(idx)
    if idx.size == 0 or idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"train_indices must be a non-empty 1-D integer sequence. Received: {train_indices!r:.80}")
    idx = np.sort(idx)
    if idx[0] < 0 or idx[-1] >= len(descriptors):
        raise ValueError(f"train_indices must lie in [0, {len(descriptors)}). Received: min={idx[0]}, max={idx[-1]}")
    if np.any(idx[1:] == idx[:-1]):
        raise ValueError("train_indices contains repeated utterances; each should appear once.")
    return BovwVocabulary.fit([descriptors[i] for i in idx], config, seed)


def silhouette_study(
    descriptors: Sequence[np.ndarray],
    ks: Sequence[int],
    sample_size: int = 10000,
    seed: int = 0,
    config: BovwConfig = BovwConfig(),
) -> "pd.DataFrame":
    """Mean silhouette value (eq. 3) of K-means clusterings of KAZE descriptors, per k.

    For each k, K-means (``config.kmeans``) is fitted on at most ``config.max_fit_descriptors``
    descriptors, then every descriptor of one fixed seeded sample of ``sample_size`` is
    labelled by its nearest centre and scored with ``sklearn.metrics.silhouette_score``. The
    same sample is scored for every k so the values compare. Silhouette costs O(sample_size^2):
    10,000 descriptors take a few seconds per k on 2 cores.

    Args:
        descriptors: one (n_i, 64) array per utterance.
        ks: cluster counts to try, e.g. (16, 32, 64, 128, 256).
        sample_size: descriptors scored per k (default 10000).
        seed: drives both samples and K-means.
        config: BOVW settings (``kmeans``, ``kmeans_batch_size``, ``max_fit_descriptors``).

    Returns:
        DataFrame with columns k, silhouette (NaN if every scored descriptor fell in one
        cluster), n_descriptors (scored), n_fit_descriptors, seconds (fit + score).
    """
    import pandas as pd
    from sklearn.metrics import silhouette_score

    check_config(config)
    if sample_size < 2:
        raise ValueError(f"sample_size must be at least 2. Received: sample_size={sample_size}")
    rows = _stack(descriptors, descriptor_dim(config))
    fit_rows = _sample_rows(rows, config.max_fit_descriptors, seed)
    scored = _sample_rows(rows, sample_size, seed + 1)
    records = []
    for k in ks:
        if k < 2 or k > len(fit_rows):
            raise ValueError(f"Each k must lie in [2, {len(fit_rows)}] (the descriptors available). Received: k={k}")
        start = time.perf_counter()
        model = _kmeans(config, int(k), seed).fit(fit_rows)
        labels = _nearest(scored, np.asarray(model.cluster_centers_, dtype=np.float32))
        n_labels = len(np.unique(labels))
        # eq. 3 is undefined with one cluster, and sklearn refuses one point per cluster.
        value = float(silhouette_score(scored, labels)) if 1 < n_labels < len(scored) else float("nan")
        records.append({
            "k": int(k),
            "silhouette": value,
            "n_descriptors": len(scored),
            "n_fit_descriptors": len(fit_rows),
            "seconds": round(time.perf_counter() - start, 3),
        })
    return pd.DataFrame.from_records(records, columns=["k", "silhouette", "n_descriptors", "n_fit_descriptors", "seconds"])
