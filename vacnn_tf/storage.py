"""Atomic file writes and plain-array npz loading: what is written is either whole or absent."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def atomic_write(path: str | Path, writer: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``, so a killed process leaves no torn file.

    ``suffix`` is appended to the temporary name for writers that insist on an extension
    (``np.savez`` adds ``.npz``, Keras checks ``.keras``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_npz(path: str | Path, **arrays: Any) -> Path:
    """Write arrays to an npz file atomically. Object arrays are refused: npz stores them only as serialized Python objects."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"Array {name!r} has dtype object, which npz can store only as serialized Python objects (not loadable with allow_pickle=False).")

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, writer)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an npz file, never unpickling anything."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
