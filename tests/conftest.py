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
