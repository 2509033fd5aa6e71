"""Resumable fitting: a fit killed anywhere, even between Keras's backup and the selection record, resumes to the numbers of an unbroken one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vacnn_tf.training.fitting import BACKUP_DIR, SelectBest, align_backup, fit_resumable


class Crash(RuntimeError):
    pass


def _backup(fold: Path, epoch: int, prev: int | None) -> Path:
    backup = fold / BACKUP_DIR
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_text(f"weights after {epoch}")
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": epoch, "batch": 0}))
    if prev is not None:
        (backup / "latest.weights.h5.bkp").write_text(f"weights after {prev}")
        (backup / "training_metadata.json.bkp").write_text(json.dumps({"epoch": prev, "batch": 0}))
    return backup


def test_a_backup_ahead_of_the_record_steps_back_or_starts_over(tmp_path):
    backup = _backup(tmp_path / "ahead", epoch=3, prev=2)
    align_backup(tmp_path / "ahead", recorded=2)
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert (backup / "latest.weights.h5").read_text() == "weights after 2"

    backup = _backup(tmp_path / "level", epoch=3, prev=2)
    align_backup(tmp_path / "level", recorded=3)  # in step: untouched
    assert (backup / "latest.weights.h5").read_text() == "weights after 3"

    _backup(tmp_path / "first", epoch=1, prev=None)  # killed after the first epoch's backup
    align_backup(tmp_path / "first", recorded=0)
    assert not (tmp_path / "first" / BACKUP_DIR).exists()
    align_backup(tmp_path / "none", recorded=0)  # nothing to align


def test_a_kill_between_the_backup_and_the_record_loses_no_epoch(tmp_path, monkeypatch):
    import keras

    from vacnn_tf.config import TrainConfig
    from vacnn_tf.datasets.pipeline import Masking, make_dataset
    from vacnn_tf.models import optimization

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), np.arange(20) % 3

    def fit(fold: Path) -> list[np.ndarray]:
        keras.utils.set_random_seed(1)
        inputs = keras.Input((8, 8, 1), name="logmel")
        hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
        # 3 batches an epoch against 2 steps a call: a call must not run into the next epoch's batches
        optimization.compile_model(model, TrainConfig(learning_rate=0.05, steps_per_execution=2, mixup=0.2), steps_per_epoch=3)
        train = lambda epoch: make_dataset(images[:16], labels[:16], batch_size=6, shuffle=True, seed=5, epoch=epoch,
                                           masking=Masking(masks=1, freq_width=2, time_width=2), mixup=0.2, num_classes=3)
        val = make_dataset(images[16:], labels[16:], batch_size=4)
        fit_resumable(model, train, val, fold, epochs=5, patience=10, verbose=0)
        return model.get_weights()

    unbroken = fit(tmp_path / "unbroken")
    record = SelectBest.on_epoch_end

    def killed_before_recording(self, epoch, logs=None):
        if epoch == 2:  # Keras has backed up epoch 2; the record still ends at epoch 1
            raise Crash("killed between the backup and the record")
        record(self, epoch, logs)

    monkeypatch.setattr(SelectBest, "on_epoch_end", killed_before_recording)
    with pytest.raises(Crash):
        fit(tmp_path / "killed")
    assert json.loads((tmp_path / "killed" / BACKUP_DIR / "training_metadata.json").read_text())["epoch"] == 3
    monkeypatch.setattr(SelectBest, "on_epoch_end", record)
    resumed = fit(tmp_path / "killed")

    for a, b in zip(unbroken, resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    history = pd.read_csv(tmp_path / "killed" / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3, 4]  # epoch 2 redone and recorded once
    pd.testing.assert_frame_equal(history, pd.read_csv(tmp_path / "unbroken" / "history.csv"))
    state = lambda fold: json.loads((tmp_path / fold / "selection.json").read_text())
    assert state("killed")["best"] == state("unbroken")["best"] and state("killed")["history"] == state("unbroken")["history"]
