"""Files are written whole or not at all; a full disk says which file and how to go on."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from vacnn_tf.storage import DiskFullError, atomic_write, load_npz, save_npz, write_text


def _fill_disk_after(first: bytes):
    """A writer that writes part of a file, then fails as a full disk does."""
    def writer(tmp: Path) -> None:
        tmp.write_bytes(first)
        raise OSError(errno.ENOSPC, "No space left on device")
    return writer


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    def killed(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("boom")

    target = write_text(tmp_path / "model.keras", "old")
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(target, killed)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_written_files_get_the_usual_permissions(tmp_path):
    """As open() would make them (0666 less the umask), not mkstemp's owner-only 0600."""
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    path = write_text(tmp_path / "summary.json", "{}")
    plain = tmp_path / "plain.txt"
    plain.write_text("{}")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_a_full_disk_names_the_file_and_the_way_on(tmp_path):
    target = write_text(tmp_path / "fold_0" / "best.weights.h5", "old")
    with pytest.raises(DiskFullError) as info:
        atomic_write(target, _fill_disk_after(b"partial"), suffix=".weights.h5")
    err = info.value
    assert err.errno == errno.ENOSPC and isinstance(err, OSError) and err.filename == str(target)
    assert str(target) in err.strerror and "MB free" in err.strerror and "--resume" in err.strerror
    assert isinstance(err.__cause__, OSError)  # the library's own error stays attached
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_other_os_errors_pass_through_unchanged(tmp_path):
    def denied(tmp: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(PermissionError) as info:
        atomic_write(tmp_path / "x.json", denied)
    assert not isinstance(info.value, DiskFullError)


def test_npz_round_trip_refuses_object_arrays(tmp_path):
    path = save_npz(tmp_path / "cache.npz", images=np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(load_npz(path)["images"], np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="'labels' has dtype object"):
        save_npz(tmp_path / "bad.npz", labels=np.array(["a", None], dtype=object))
    assert not (tmp_path / "bad.npz").exists()


def test_the_cli_turns_a_full_disk_into_a_message_and_exit_1(tmp_path, monkeypatch, capsys):
    """A full disk is a failure while running, not a usage error: exit 1, one line on stderr."""
    from vacnn_tf.cli import main
    from vacnn_tf.training import finetuning

    def full(*args, **kwargs):
        atomic_write(tmp_path / "run" / "fold_1" / "model.keras", _fill_disk_after(b"x"), suffix=".keras")

    monkeypatch.setattr(finetuning, "finetune", full)
    assert main(["finetune", "--target", "emodb", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vacnn finetune: error: No space left on device while writing")
    assert "fold_1/model.keras" in err and "--resume" in err and "[Errno" not in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
