"""Shared fixtures.

Disk matters on CI: one VACNN checkpoint is about 60 MB, and the suite writes dozens. Each test's
``tmp_path`` goes when it passes (``tmp_path_retention_policy`` in setup.cfg); ``module_tmp``
does the same for what a module's tests share, so the suite never holds more than one module's
models at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_tmp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch folder shared by one module's tests, removed after them unless one failed."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    failed_before = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


EMODB_CLASSES = ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness")


@pytest.fixture
def fake_emodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """An EmoDB-shaped corpus of random images (2 speakers x 7 classes x 2), for tests of who trains
    what and of the bookkeeping around it, not of features."""
    import numpy as np
    import pandas as pd

    from vacnn_tf.datasets.loading import CorpusData

    rows = [{"path": f"/emodb/{s}_{c}_{k}.wav", "corpus": "emodb", "speaker": s, "label": c}
            for s in ("03", "08") for c in EMODB_CLASSES for k in range(2)]
    table = pd.DataFrame(rows)
    images = np.random.default_rng(0).integers(0, 256, (len(table), 224, 224), dtype=np.uint8)
    labels = table["label"].map(EMODB_CLASSES.index).to_numpy(np.int32)
    data = CorpusData("emodb", table, images, EMODB_CLASSES, labels, [], [])
    monkeypatch.setattr("vacnn_tf.datasets.loading.read_table", lambda config, name: (table, []))
    for stage in ("pretraining", "finetuning"):
        monkeypatch.setattr(f"vacnn_tf.training.{stage}.load_corpus", lambda config, name, **kw: data)
    monkeypatch.setattr("vacnn_tf.training.run_dirs.package_versions", lambda: {})  # naming TensorFlow's version imports it
