"""One resumable ``model.fit``: model selection on validation accuracy, early stopping, checkpoints.

The paper (section 4.2) uses early stopping on validation and selects the model by validation
accuracy. Keras's EarlyStopping keeps its best weights in memory only, so a killed process
would lose them; :class:`SelectBest` does the same job but keeps its state on disk
(``selection.json`` + ``best.weights.h5``), and Keras's BackupAndRestore restores weights,
optimizer state (and so the learning-rate step) and the epoch counter. A killed fit therefore
continues from its last finished epoch.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from vacnn_tf.config import SELECT_ON
from vacnn_tf.models.runtime import quiet_dict_inputs
from vacnn_tf.storage import atomic_write, read_json, write_json

STATE_FILE = "selection.json"
BEST_WEIGHTS = "best.weights.h5"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"

log = logging.getLogger(__name__)


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the Keras backend (keras.utils.set_random_seed) and ask for deterministic ops.

    Under TensorFlow, ``tf.config.experimental.enable_op_determinism`` makes reductions
    order-stable, so the same seed gives the same weights and metrics on the same machine and
    library versions. JAX's CPU ops are deterministic without a switch.
    """
    import keras

    keras.utils.set_random_seed(int(seed))
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _callback_base() -> type:
    import keras

    return keras.callbacks.Callback


class SelectBest(_callback_base()):  # type: ignore[misc]
    """Model selection on validation accuracy (ties broken by lower validation loss) + early stopping.

    State (per-epoch history, best epoch, epochs without improvement, stopped) is written to
    ``fold_dir/selection.json`` after every epoch and the best weights to
    ``fold_dir/best.weights.h5``, both atomically, so a resumed fit keeps counting patience
    where it stopped.

    Args:
        fold_dir: Folder of the fold (or of the pretraining stage).
        patience: Epochs without a better validation accuracy before stopping.
        monitor: Metric selected on (``val_accuracy``); ``None`` keeps the last epoch's weights.
    """

    def __init__(self, fold_dir: str | Path, patience: int, monitor: Optional[str] = "val_accuracy",
                 select_on: str = "accuracy") -> None:
        super().__init__()
        if select_on not in SELECT_ON:
            raise ValueError(f"Config key 'train.select_on' must be one of {SELECT_ON}. Received: train.select_on={select_on!r}")
        self.fold_dir = Path(fold_dir)
        self.patience = int(patience)
        self.monitor = monitor
        self.select_on = select_on
        self.state: dict[str, Any] = load_state(self.fold_dir)

    def _better(self, acc: float, loss: float) -> bool:
        best = self.state.get("best")
        if best is None:
            return True
        if self.select_on == "loss":
            # a small validation set moves accuracy in steps of one utterance; its loss is smoother
            return loss < best["loss"] or (loss == best["loss"] and acc > best["acc"])
        return acc > best["acc"] or (acc == best["acc"] and loss < best["loss"])

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        history = [h for h in self.state["history"] if h["epoch"] < epoch]  # a redone epoch replaces itself
        history.append({"epoch": epoch, **logs})
        self.state["history"] = history
        if self.monitor is None:  # no validation set: the last epoch is the selected one
            self.state["best"] = {"epoch": epoch, "acc": None, "loss": None}
            atomic_write(self.fold_dir / BEST_WEIGHTS, self.model.save_weights, suffix=".weights.h5")
        elif self.monitor in logs:
            acc = logs[self.monitor]
            loss = logs.get("val_loss", math.inf)
            if self._better(acc, loss):
                self.state["best"] = {"epoch": epoch, "acc": acc, "loss": loss}
                self.state["wait"] = 0
                atomic_write(self.fold_dir / BEST_WEIGHTS, self.model.save_weights, suffix=".weights.h5")
            else:
                self.state["wait"] = int(self.state.get("wait", 0)) + 1
            if self.state["wait"] >= self.patience:
                self.state["stopped"] = True
                self.model.stop_training = True
        write_json(self.fold_dir / STATE_FILE, self.state)
        write_history_csv(self.fold_dir, history)


def write_history_csv(fold_dir: Path, history: list[dict[str, Any]]) -> None:
    """``history.csv`` from the selection record, one row an epoch (Keras CSVLogger's columns).

    Written whole from the record rather than appended, so it can neither miss an epoch nor
    repeat a redone one.
    """
    import pandas as pd

    frame = pd.DataFrame(history)
    frame = frame[["epoch", *sorted(c for c in frame.columns if c != "epoch")]]
    atomic_write(fold_dir / HISTORY_FILE, lambda p: frame.to_csv(p, index=False))


def align_backup(fold_dir: str | Path, recorded: int) -> None:
    """Make the resume backup agree with the selection record before a fit resumes.

    Keras writes its backup at the end of an epoch before SelectBest records the epoch, so a
    kill in between leaves a backup one epoch ahead of the record. Resuming from it would skip
    that epoch's record (and its chance to be the selected model). Go back to the backup
    before it, which Keras keeps (``double_checkpoint``): the epoch is redone, with the same
    numbers, and recorded. Without that earlier backup the fit starts over.
    """
    backup = Path(fold_dir) / BACKUP_DIR
    meta, weights = backup / "training_metadata.json", backup / "latest.weights.h5"
    if not meta.is_file() or int(read_json(meta).get("epoch", 0)) <= recorded:
        return
    prev_meta, prev_weights = meta.with_name(meta.name + ".bkp"), weights.with_name(weights.name + ".bkp")
    if recorded > 0 and prev_meta.is_file() and prev_weights.is_file() and int(read_json(prev_meta).get("epoch", -1)) == recorded:
        log.info("%s: the backup is one epoch ahead of the record; resuming from the one before", backup)
        os.replace(prev_weights, weights)
        os.replace(prev_meta, meta)
    else:
        log.info("%s: the backup is ahead of the record and has no earlier copy; the fit starts over", backup)
        shutil.rmtree(backup)


class TestAudit(_callback_base()):  # type: ignore[misc]
    """Score the test part after every epoch into ``logs["audit_test_accuracy"]`` (``train.audit_test``).

    A measurement of the leak docs/protocols.md names (a checkpoint chosen on the test fold), never an
    input to selection: :class:`SelectBest` reads validation metrics only. It must run before
    SelectBest and CSVLogger so both record the column, and after an EMA swap so it scores the
    weights SelectBest would save.

    Args:
        score: Returns the test accuracy of the model's current weights.
    """

    def __init__(self, score: Callable[[], float]) -> None:
        super().__init__()
        self.score = score

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if logs is not None:
            logs["audit_test_accuracy"] = float(self.score())


class ClaimGuard(_callback_base()):  # type: ignore[misc]
    """Stop a fit at the next epoch once its unit's claim went to another worker.

    That happens only when this worker was silent past the claim timeout (suspended, or its
    filesystem unreachable) and another took the unit over (:mod:`vacnn_tf.training.claims`): two workers
    must not go on writing one fold.

    Args:
        holds: True while this worker's claim is the one in force.
        unit: The unit's directory, for the message.
    """

    def __init__(self, holds: Callable[[], bool], unit: str) -> None:
        super().__init__()
        self.holds = holds
        self.unit = unit

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if not self.holds():
            from vacnn_tf.training.claims import ClaimLost

            raise ClaimLost(f"{self.unit}: another worker took this unit over (this one was silent past the "
                            "claim timeout); it goes on there")


class EpochCounter:
    """The epoch index where no TensorFlow variable can hold it: ``assign`` sets it, ``int()`` reads it."""

    def __init__(self) -> None:
        self.value = 0

    def assign(self, value: int) -> None:
        self.value = int(value)

    def __int__(self) -> int:
        return self.value


class EpochIndex(_callback_base()):  # type: ignore[misc]
    """Hold the index of the epoch being fitted in ``variable``, which the training set reads.

    Keras calls ``on_epoch_begin(e)`` with the true index, resumed fits included, before it
    starts the epoch's iterator; ``make_dataset(..., epoch=variable)`` reads the variable when
    an iterator starts (a PyDataset, under another backend: when it makes a batch), so each
    epoch draws its order and augmentation from (seed, e). The variable is an int64
    ``tf.Variable`` under TensorFlow, whose tf.data graph reads it, else an :class:`EpochCounter`.
    """

    def __init__(self) -> None:
        import keras

        super().__init__()
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            self.variable: Any = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_index")
        else:
            self.variable = EpochCounter()

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.variable.assign(epoch)


class ReseedRandomLayers(_callback_base()):  # type: ignore[misc]
    """Start each epoch's random layers (Dropout) from a state set by the epoch index.

    A layer's seed-generator state is not saved with the weights, so a fit resumed from its
    backup would draw epoch e's dropout masks from the state a fresh model starts with. Set at
    each epoch's start from (the model's initial state, e), epoch e draws the same masks
    resumed or not.
    """

    STRIDE = 1 << 20  # draws one epoch may take before it would reach the next epoch's

    def set_model(self, model: Any) -> None:
        import keras
        import numpy as np

        super().set_model(model)
        # read here, before BackupAndRestore's on_train_begin: the initial state, not a restored one
        self.start = [(g, np.asarray(keras.ops.convert_to_numpy(g.state), dtype=np.uint64))
                      for g in _seed_generators(model)]

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        import numpy as np

        for generator, start in self.start:
            state = (start + np.array([0, epoch * self.STRIDE], dtype=np.uint64)) % (1 << 32)
            generator.state.assign(state.astype(generator.state.dtype))


def _seed_generators(model: Any) -> list[Any]:
    """Every seed generator of ``model``'s layers, nested models included, each once."""
    found: dict[int, Any] = {}

    def walk(layer: Any) -> None:
        for generator in [getattr(layer, "seed_generator", None), *getattr(layer, "_seed_generators", [])]:
            if generator is not None and hasattr(generator, "state"):
                found.setdefault(id(generator), generator)
        for sub in getattr(layer, "layers", []):
            walk(sub)

    walk(model)
    return list(found.values())


def audit_facts(state: dict[str, Any]) -> dict[str, Any]:
    """The leak audit's summary of a fit: the best per-epoch test accuracy and its epoch (empty without audit)."""
    scored = [(h["audit_test_accuracy"], -h["epoch"]) for h in state.get("history", []) if "audit_test_accuracy" in h]
    if not scored:
        return {}
    acc, neg_epoch = max(scored)  # ties: the earliest epoch
    return {"audit_best_test_accuracy": acc, "audit_best_test_epoch": -neg_epoch}


def load_state(fold_dir: str | Path) -> dict[str, Any]:
    """The selection state of a fold (an empty one when none was written)."""
    path = Path(fold_dir) / STATE_FILE
    if path.is_file():
        return read_json(path)
    return {"history": [], "best": None, "wait": 0, "stopped": False, "finished": False}


def _tensorboard(log_dir: Path) -> list[Any]:
    """A TensorBoard callback, or none (with a warning) where the tensorboard package is missing.

    TensorFlow 2.21 no longer installs tensorboard; training must not fail for want of its logs.
    Nor under another Keras backend, where the callback would need TensorFlow to write them:
    there history.csv is the record.
    """
    import importlib.util

    import keras

    if keras.backend.backend() != "tensorflow":
        log.info("no TensorBoard logs under the %s backend (they are written with TensorFlow)", keras.backend.backend())
        return []
    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed: no TensorBoard logs in %s (pip install tensorboard)", log_dir)
        return []
    return [keras.callbacks.TensorBoard(str(log_dir), write_graph=False, profile_batch=0)]


def fit_resumable(
    model: Any,
    train_ds: Any,
    val_ds: Optional[Any],
    fold_dir: str | Path,
    *,
    epochs: int,
    patience: int,
    verbose: int = 1,
    extra_callbacks: Optional[list[Any]] = None,
    select_on: str = "accuracy",
    audit: Optional[Callable[[], float]] = None,
) -> dict[str, Any]:
    """Fit ``model`` with epoch-level resume, then load the selected (best-on-validation) weights.

    Args:
        model: A compiled Keras model.
        train_ds: Training dataset, or a function that builds one from the epoch index's
            holder (an int64 ``tf.Variable``, or an :class:`EpochCounter` under another backend:
            ``make_dataset(..., epoch=variable)``),
            which this fit sets at the start of every epoch, resumed ones included. Only the
            function form makes a resumed fit the same as an unbroken one: a plain dataset
            starts its shuffle over.
        val_ds: Validation dataset, or None (then the last epoch's weights are kept).
        fold_dir: Where the fold's state, backup, TensorBoard logs and history.csv live.
        epochs: Maximum epochs.
        patience: Early-stopping patience in epochs.
        verbose: Keras progress-bar mode (0, 1, 2).
        extra_callbacks: More callbacks (tests use one to simulate a crash).
        select_on: ``accuracy`` (the paper: best validation accuracy, ties to the lower loss) or
            ``loss`` (lowest validation loss, ties to the higher accuracy); early stopping
            counts epochs without a better one by the same rule.
        audit: ``train.audit_test``: returns the test accuracy of the current weights, recorded
            each epoch by a :class:`TestAudit`; None: no audit.

    Returns:
        The selection state: ``history`` (per-epoch logs), ``best`` (epoch, acc, loss), ``stopped``,
        ``epochs_run``.
    """
    fold_dir = Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(fold_dir)
    if not (state.get("stopped") or state.get("finished")):
        align_backup(fold_dir, len(state.get("history", [])))
        select = SelectBest(fold_dir, patience, "val_accuracy" if val_ds is not None else None, select_on)
        callbacks = _fit_callbacks(model, fold_dir, select, audit, extra_callbacks)
        if callable(train_ds):
            epoch = EpochIndex()
            train_ds = train_ds(epoch.variable)
            callbacks.insert(0, epoch)
        with quiet_dict_inputs():
            # shuffle=False: the datasets shuffle themselves, per seed (Keras would ignore True and warn).
            model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
        state = select.state
        state["finished"] = True
        write_json(fold_dir / STATE_FILE, state)
    if state.get("best") is not None and (fold_dir / BEST_WEIGHTS).is_file():
        model.load_weights(str(fold_dir / BEST_WEIGHTS))
    state["epochs_run"] = len(state.get("history", []))
    return state


def _fit_callbacks(model: Any, fold_dir: Path, select: SelectBest, audit: Optional[Callable[[], float]],
                   extra_callbacks: Optional[list[Any]]) -> list[Any]:
    """The callbacks of :func:`fit_resumable`'s ``model.fit``, in the order they must run at an epoch's end."""
    import keras

    return [
        # BackupAndRestore first: its epoch-end backup (weights, optimizer, epoch) is written
        # before SelectBest's state, so a kill in between at worst forgets one epoch's record.
        keras.callbacks.BackupAndRestore(str(fold_dir / BACKUP_DIR), delete_checkpoint=False, double_checkpoint=True),
        ReseedRandomLayers(),
        # With an EMA optimizer: validation runs on the averaged weights, and they sit in the
        # model during the epoch-end callbacks after this one, so SelectBest saves them. The
        # backup above keeps the raw weights (and the average in the optimizer state).
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if getattr(model.optimizer, "use_ema", False) else []),
        *([TestAudit(audit)] if audit is not None else []),
        select,
        *_tensorboard(fold_dir / "logs"),
        *(extra_callbacks or []),
    ]


def cleanup_fold(fold_dir: str | Path) -> None:
    """Drop resume-only files once a fold is finished (its model.keras holds the selected weights).

    The best-weights copy goes too: it duplicates model.keras (about 60 MB a fold at 224x224),
    and a five-fold run on a small disk should not hold every model twice.
    """
    fold_dir = Path(fold_dir)
    shutil.rmtree(fold_dir / BACKUP_DIR, ignore_errors=True)
    (fold_dir / BEST_WEIGHTS).unlink(missing_ok=True)
