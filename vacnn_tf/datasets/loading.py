"""Corpus tables with their log-mel images in memory: the input of every training stage.

``data.data_root`` None means the synthetic corpus: it is generated once into
``storage.synthetic_cache_dir`` and read from there with the real readers. Images come from
the feature cache (``storage.features_cache_dir``), so every table and fold that uses the same
feature settings extracts each file once.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from vacnn_tf.config import RunConfig
from vacnn_tf.corpora.labels import classes_for
from vacnn_tf.storage import features_cache_dir, synthetic_cache_dir

log = logging.getLogger(__name__)


@dataclass
class CorpusData:
    """A corpus (or the pretraining mix) ready for training.

    Attributes:
        name: Corpus name, or ``pretrain`` for TESS + RAVDESS.
        table: Rows with a usable image, index 0..N-1 (columns of ``corpora.COLUMNS``).
        images: uint8 ``(N, 224, 224)`` log-mel images, row-aligned with ``table``.
        classes: Ordered class names; ``y`` indexes them.
        y: int ``(N,)`` class ids.
        failures: ``(path, reason)`` of files whose audio could not be used (reported, not hidden).
        unmatched: ``(path, reason)`` of files the corpus reader did not understand.
    """

    name: str
    table: pd.DataFrame
    images: np.ndarray
    classes: tuple[str, ...]
    y: np.ndarray
    failures: list[tuple[str, str]]
    unmatched: list[tuple[str, str]]


def synthetic_root(config: RunConfig) -> Path:
    """Generate the synthetic corpus once (atomically) and return its root folder."""
    from vacnn_tf.corpora.synth import SYNTH_VERSION, generate

    root = synthetic_cache_dir(config, SYNTH_VERSION)
    if (root / "DONE").is_file():
        return root
    # Build aside and rename, so concurrent or killed runs never see a half-written corpus.
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, per_class=config.data.synth_per_class, seed=config.seed)
    (tmp / "DONE").write_text("ok\n")
    try:
        os.replace(tmp, root) if not root.exists() else shutil.rmtree(tmp)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    if not (root / "DONE").is_file():  # a stale half-made folder from an old crash: replace it
        shutil.rmtree(root)
        return synthetic_root(config)
    return root


def data_root(config: RunConfig) -> Path:
    """The folder holding ``ravdess/ emodb/ tess/ savee/`` (real, or the synthetic corpus)."""
    if config.data.data_root is None:
        return synthetic_root(config)
    return Path(config.data.data_root)


def read_table(config: RunConfig, name: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The corpus table of ``name`` (subsampled per ``protocol.subsample``) and its unmatched files."""
    from vacnn_tf.corpora.readers import corpus_root, read_corpus
    from vacnn_tf.datasets.folds import subsample_table

    scan = read_corpus(name, corpus_root(data_root(config), name))
    if scan.unmatched:
        log.warning("%s: %d file(s) not used, e.g. %s", name, len(scan.unmatched), scan.unmatched[0])
    if len(scan.table) == 0:
        raise ValueError(f"Corpus {name!r} under {data_root(config)} has no usable file.")
    return subsample_table(scan.table, config.protocol.subsample, config.seed), list(scan.unmatched)


def load_corpus(
    config: RunConfig,
    name: str,
    table: Optional[pd.DataFrame] = None,
    classes: Optional[Sequence[str]] = None,
) -> CorpusData:
    """Read a corpus (or take ``table``), extract its log-mel images through the cache, encode labels.

    Args:
        config: ``data`` (root, cache, workers), ``features``, ``protocol.subsample``, ``seed``.
        name: Corpus name (or a label such as ``pretrain`` when ``table`` is given).
        table: A ready table (the pretraining mix); read from disk when None.
        classes: Class order; default ``labels.classes_for(name)``.

    Returns:
        A :class:`CorpusData` whose rows all have an image.
    """
    from vacnn_tf.features.logmel import extract_images

    unmatched: list[tuple[str, str]] = []
    if table is None:
        table, unmatched = read_table(config, name)
    classes = tuple(classes) if classes is not None else classes_for(name)
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise ValueError(f"Labels {unknown} of {name!r} are not among its classes {list(classes)}.")
    batch = extract_images(
        table["path"].astype(str).tolist(), config.features, cache_dir=features_cache_dir(config),
        workers=config.data.workers, progress=config.train.verbose > 0,
    )
    if batch.failures:
        log.warning("%s: %d file(s) could not be used, e.g. %s", name, len(batch.failures), batch.failures[0])
    kept = table[np.asarray(batch.ok, dtype=bool)].reset_index(drop=True)
    index = {c: i for i, c in enumerate(classes)}
    y = kept["label"].map(index).to_numpy().astype(np.int32)
    return CorpusData(name, kept, np.asarray(batch.images, dtype=np.uint8), classes, y, list(batch.failures), unmatched)


def describe(data: CorpusData) -> dict[str, Any]:
    """Counts for the manifest: files, per-class counts, speakers, failures."""
    return {
        "files": int(len(data.table)),
        "classes": {c: int((data.y == i).sum()) for i, c in enumerate(data.classes)},
        "speakers": int(data.table["speaker"].nunique()),
        "failures": [{"path": p, "reason": r} for p, r in data.failures],
        "unmatched": len(data.unmatched),
    }
