"""Atomic file writes, plain-array npz loading, and where the caches live.

What is written is either whole or absent. Every stage that reads or fills a cache takes its
folder from :func:`features_cache_dir`, :func:`bovw_cache_dir` or :func:`synthetic_cache_dir`,
so a command that fills a cache fills the one training reads.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from vacnn_tf.config import RunConfig


class DiskFullError(OSError):
    """The disk filled up while writing a file; what was finished before is intact."""

    def __str__(self) -> str:  # the message alone: it already names the file
        return str(self.strerror)


def _disk_full(path: Path, err: OSError) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MB free there now"
    except OSError:
        free = "free space unknown"
    return DiskFullError(errno.ENOSPC, (
        f"No space left on device while writing {path} ({free}). Nothing finished is lost: every file "
        "is written whole or not at all. Free some space, then rerun the same command "
        "(`vacnn` commands with --resume; `python -m reproduce.tableN` resumes by itself)."
    ), str(path))


def _file_mode() -> int:
    umask = os.umask(0)  # read once, at import, before any thread could create a file in between
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def atomic_write(path: str | Path, writer: Callable[[Path], None], suffix: str = "") -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``, so a killed process leaves no torn file.

    ``suffix`` is appended to the temporary name for writers that insist on an extension
    (``np.savez`` adds ``.npz``, Keras checks ``.keras``). A full disk raises DiskFullError,
    which names the file and how to go on, instead of h5py's or zipfile's low-level message.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes it owner-only; runs and caches shared with a group must stay readable
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno == errno.ENOSPC and not isinstance(err, DiskFullError):
            tmp_path.unlink(missing_ok=True)  # first, so the free space reported counts it
            raise _disk_full(path, err) from err
        raise
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


def features_cache_dir(config: RunConfig) -> Path:
    """Root of the log-mel image cache: ``{data.cache_dir}/features`` (``logmel/<settings key>/`` below it)."""
    return Path(config.data.cache_dir) / "features"


def bovw_cache_dir(config: RunConfig) -> Path:
    """Root of the KAZE descriptor cache: ``{data.cache_dir}/bovw`` (``kaze/<settings key>/`` below it)."""
    return Path(config.data.cache_dir) / "bovw"


def synthetic_cache_dir(config: RunConfig, version: int) -> Path:
    """Where the synthetic corpus of this seed and size is generated:
    ``{data.cache_dir}/synthetic-v{version}-{seed}-{per_class}``.

    The generator's ``version`` is in the name because a finished folder is used as it is: a newer
    signal model must not read the corpus an older one wrote.
    """
    return Path(config.data.cache_dir) / f"synthetic-v{version}-{config.seed}-{config.data.synth_per_class}"
